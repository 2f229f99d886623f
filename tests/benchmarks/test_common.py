"""The shared helpers of the benchmark scripts."""

import numpy as np

from benchmarks import common


def test_relative_difference_scales_by_the_largest_reference_magnitude():
    want = np.array([4.0, -8.0, 0.0])
    got = np.array([4.5, -8.0, 0.25])
    # Largest absolute difference 0.5, largest reference magnitude 8.
    assert common.relative_difference(got, want) == 0.0625


def test_attention_parser_keeps_each_benchmarks_defaults():
    args = common.attention_parser("Doc.\nMore.", batch=4, repeats=20).parse_args([])
    assert (args.batch, args.tokens, args.heads, args.head_dim) == (4, 197, 12, 64)
    assert (args.dtypes, args.repeats, args.json) == (["bfloat16", "float32"], 20, False)
    args = common.attention_parser("Doc.", batch=8, repeats=11).parse_args(
        ["--batch", "2", "--dtypes", "float32", "--json"]
    )
    assert (args.batch, args.dtypes, args.repeats, args.json) == (2, ["float32"], 11, True)
