"""How the catalog files the numbers assets: group, owners, tags, code versions, and the
columns of the Parquet files they write."""

import dagster as dg
import pyarrow as pa

GROUP = "numbers"
BENCHMARK_GROUP = "benchmarks"
# Who answers for these assets, and how the catalog files them (Dagster's example projects
# set both on every asset).
OWNERS = ["team:data-engineering"]
TAGS = {"domain": "numbers", "compute": "cpu-heavy"}
# Bumped when an asset's output for the same input changes (a parsing rule, a transform
# column, the generator), so the UI can tell materializations of older logic apart.
CODE_VERSIONS = {
    "numbers_file": "1",
    "cleaned_numbers": "1",
    "transformed_numbers": "1",
    "parallelism_report": "2",
}
COLUMN_DESCRIPTIONS = {
    "line_number": "line of numbers.txt, from 1, counting blank and rejected lines",
    "value": "the value the line holds, as int64",
    "raw": "the rejected line as text (bytes that are not UTF-8 as \\x escapes)",
    "reason": "why the line was rejected (see docs/outputs.md: how the lines are parsed)",
    "square": "value squared, exact (38-digit decimal)",
    "digit_sum": "sum of the decimal digits of |value|",
    "collatz_steps": "steps of the Collatz map from value to 1 (null below 1)",
    "smallest_prime_factor": "smallest prime factor of |value| (null for 0, 1 and -1)",
    "largest_prime_factor": "largest prime factor of |value| (null for 0, 1 and -1, or unknown)",
    "is_prime": "whether value is prime",
}


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """A Parquet file's columns as the catalog shows them (dagster/column_schema)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(field.name, str(field.type), COLUMN_DESCRIPTIONS.get(field.name))
            for field in schema
        ]
    )


def catalog(name: str, schema: pa.Schema | None = None) -> dict[str, object]:
    """The arguments of ``@dg.asset`` every numbers asset shares: group, owners, tags, code
    version, and the columns of the Parquet file it writes."""
    metadata = {"dagster/column_schema": column_schema(schema)} if schema is not None else {}
    return {
        "group_name": GROUP,
        "owners": OWNERS,
        "tags": TAGS,
        "code_version": CODE_VERSIONS[name],
        "metadata": metadata,
    }
