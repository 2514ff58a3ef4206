"""The scaling chart is a PNG of the promised size for any mix of series, the same bytes for
the same input, and Markdown that carries exactly those bytes."""

import base64
import io

import matplotlib.image
import pytest

from data_pipeline.measure.sweeps.chart import (
    DOTS_PER_INCH,
    FIGURE_INCHES,
    SizePoint,
    SizeSeries,
    WorkerPoint,
    WorkerSeries,
    markdown_image,
    png_data_uri,
    scaling_chart,
    short_count,
)
from data_pipeline.measure.timing import Spread

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PIXELS = (round(FIGURE_INCHES[1] * DOTS_PER_INCH), round(FIGURE_INCHES[0] * DOTS_PER_INCH))


def timings(median):
    return Spread.of([median * 0.95, median, median * 1.1])


def size_series(label, parallel_seconds, with_auto=True):
    sizes = (10_000, 100_000, 1_000_000)
    serial_seconds = (0.1, 1.0, 10.0)
    return SizeSeries(
        label,
        tuple(
            SizePoint(
                size,
                timings(serial),
                timings(parallel),
                timings(min(serial, parallel)) if with_auto else None,
            )
            for size, serial, parallel in zip(sizes, serial_seconds, parallel_seconds, strict=True)
        ),
    )


CROSSING = size_series("transform, numba", (0.5, 0.8, 6.0))
NEVER_CROSSING = size_series("cleaning, python", (0.5, 1.5, 12.0), with_auto=False)
ON_TWO_CPUS = WorkerSeries(
    "transform, numba",
    (WorkerPoint(1, 0.95, 0.9, 1.0), WorkerPoint(2, 1.7, 1.6, 1.8), WorkerPoint(4, 1.6)),
    cpus=2,
)


def decoded(png):
    assert png.startswith(PNG_SIGNATURE)
    return matplotlib.image.imread(io.BytesIO(png), format="png")


@pytest.mark.parametrize(
    ("case", "sizes", "workers"),
    [
        ("crossing and never crossing, with auto", [CROSSING, NEVER_CROSSING], [ON_TWO_CPUS]),
        ("a single series", [CROSSING], [ON_TWO_CPUS]),
        ("only a never crossing series", [NEVER_CROSSING], [ON_TWO_CPUS]),
        ("no auto measurements", [size_series("t", (0.5, 0.8, 6.0), with_auto=False)], []),
        ("nothing measured", [], []),
    ],
)
def test_the_chart_is_a_png_of_the_figure_size(case, sizes, workers):
    image = decoded(scaling_chart(sizes, workers))
    assert image.shape[:2] == PIXELS, case


def test_the_chart_draws_something_beyond_a_blank_page():
    image = decoded(scaling_chart([CROSSING, NEVER_CROSSING], [ON_TWO_CPUS]))
    assert image[..., :3].std() > 0.05


def test_the_same_input_gives_the_same_bytes():
    assert scaling_chart([CROSSING], [ON_TWO_CPUS]) == scaling_chart([CROSSING], [ON_TWO_CPUS])


def test_the_crossover_of_a_series_follows_the_medians():
    assert CROSSING.crossover == 100_000
    assert NEVER_CROSSING.crossover is None


def test_a_size_point_speedup_is_the_ratio_of_medians_with_the_extremes_as_its_range():
    point = SizePoint(1_000, Spread.of([2.0, 3.0, 4.0]), Spread.of([1.0, 1.5, 2.0]))
    assert point.speedup == 2.0
    assert point.speedup_range == (1.0, 4.0)
    assert point.auto_speedup is None


@pytest.mark.parametrize(
    ("count", "text"),
    [(800, "800"), (10_000, "10k"), (250_000, "250k"), (1_500_000, "1.5M"), (2e9, "2G")],
)
def test_sizes_are_written_short(count, text):
    assert short_count(count) == text


def test_the_markdown_image_carries_the_png_as_a_data_uri():
    png = scaling_chart([CROSSING], [ON_TWO_CPUS])
    markdown = markdown_image(png, "Speedup by size and workers")
    prefix = "![Speedup by size and workers](data:image/png;base64,"
    assert markdown.startswith(prefix)
    assert markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]) == png
    assert png_data_uri(png) == markdown[len("![Speedup by size and workers](") : -1]
