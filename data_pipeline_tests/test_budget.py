import pytest

from data_pipeline.parallel import cpus
from data_pipeline.parallel.budget import CPUS_VARIABLE, STEPS_VARIABLE, cpu_plan
from data_pipeline.parallel.cpus import available_cpus, available_cpus_recently


@pytest.mark.parametrize("cpus_available", [1, 2, 16])
@pytest.mark.parametrize("budget", [None, "1", "3", "64"])
@pytest.mark.parametrize("steps", [None, "1", "2", "5"])
def test_the_plan_never_runs_more_processes_than_cpus(cpus_available, budget, steps):
    environ = {
        name: value
        for name, value in ((CPUS_VARIABLE, budget), (STEPS_VARIABLE, steps))
        if value is not None
    }
    plan = cpu_plan(environ, cpus_available)
    assert 1 <= plan.processes <= plan.cpus <= cpus_available
    assert plan.workers_per_step >= 1 and plan.steps_at_once >= 1


def test_by_default_one_pooled_step_takes_every_cpu():
    plan = cpu_plan({}, 16)
    assert (plan.steps_at_once, plan.workers_per_step) == (1, 16)


def test_two_steps_at_once_share_the_budget():
    plan = cpu_plan({CPUS_VARIABLE: "8", STEPS_VARIABLE: "2"}, 16)
    assert (plan.cpus, plan.steps_at_once, plan.workers_per_step) == (8, 2, 4)


def test_a_cgroup_quota_of_one_and_a_half_cpus_gives_two(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    cpus = available_cpus(tmp_path)
    assert cpus <= 2
    plan = cpu_plan({STEPS_VARIABLE: "2"}, cpus)
    assert plan.processes <= 2


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_value_names_the_variable(value):
    with pytest.raises(ValueError, match=rf"{CPUS_VARIABLE}='{value}'"):
        cpu_plan({CPUS_VARIABLE: value}, 4)


@pytest.mark.parametrize("reported", [1, 2, 16])
def test_available_cpus_follows_what_the_machine_reports(monkeypatch, tmp_path, reported):
    monkeypatch.setattr("os.cpu_count", lambda: reported)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(reported)))
    assert available_cpus(tmp_path) == reported  # no cgroup files under tmp_path
    plan = cpu_plan({STEPS_VARIABLE: "3"}, available_cpus(tmp_path))
    assert plan.processes <= reported


def test_decisions_count_the_cpus_again_only_after_a_while(monkeypatch):
    counted = []
    monkeypatch.setattr(cpus, "available_cpus", lambda: counted.append(1) or 3)
    monkeypatch.setattr(cpus, "_counted", None)
    assert [available_cpus_recently() for _ in range(5)] == [3] * 5
    assert len(counted) == 1
    assert available_cpus_recently(max_age_seconds=0) == 3 and len(counted) == 2
