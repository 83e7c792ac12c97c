"""Parsing compression options into a spec, and the one-line errors for bad values."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compressors.spec import UNSTRUCTURED, CompressionSpec, Pattern, SpecError, build_spec, parse_pattern


def test_defaults_are_dense_wanda():
    spec = build_spec()
    assert spec == CompressionSpec()
    assert spec.is_dense and spec.method == "wanda" and spec.pattern == UNSTRUCTURED
    assert spec.label() == "dense"


def test_unstructured_spec():
    spec = build_spec(method="sparsegpt", sparsity="0.5", calib_samples="16", calib_seqlen="64", calib_seed="3")
    assert (spec.method, spec.sparsity, spec.calib_samples, spec.calib_seqlen, spec.calib_seed) == (
        "sparsegpt", 0.5, 16, 64, 3)
    assert spec.label() == "sparsegpt 50% unstructured"
    assert hash(spec) == hash(build_spec(method="sparsegpt", sparsity=0.5, calib_samples=16, calib_seqlen=64,
                                         calib_seed=3))


@pytest.mark.parametrize(("text", "n", "m", "sparsity"), [("2:4", 2, 4, 0.5), ("4:8", 4, 8, 0.5), ("1:4", 1, 4, 0.25),
                                                          (" 3 : 4 ", 3, 4, 0.75)])
def test_n_m_pattern_means_n_zeros_in_m(text, n, m, sparsity):
    pattern = parse_pattern(text)
    assert (pattern.n, pattern.m, pattern.sparsity) == (n, m, sparsity)
    spec = build_spec(pattern=text)
    assert spec.sparsity == sparsity and str(spec.pattern) == f"{n}:{m}"


def test_layer_sequential_is_the_default_and_block_is_named_in_the_label():
    assert build_spec(sparsity=0.5).sequential == "layer"
    assert build_spec(sparsity=0.5).label() == "wanda 50% unstructured"
    spec = build_spec(method="sparsegpt", sparsity=0.5, sequential=" Block ")
    assert spec.sequential == "block" and spec.label() == "sparsegpt 50% unstructured block-sequential"
    assert spec.to_dict()["sequential"] == "block" and spec != build_spec(method="sparsegpt", sparsity=0.5)


def test_pattern_with_matching_sparsity_is_accepted():
    assert build_spec(pattern="2:4", sparsity="0.5").pattern == Pattern(2, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sparsity": "1.5"}, "outside [0, 1)"),
        ({"sparsity": "1"}, "outside [0, 1)"),
        ({"sparsity": "-0.1"}, "outside [0, 1)"),
        ({"sparsity": "half"}, "not a number"),
        ({"pattern": "3:2"}, "0 < N < M"),
        ({"pattern": "a:b"}, "not a pattern"),
        ({"pattern": "4:4"}, "0 < N < M"),
        ({"pattern": "0:4"}, "0 < N < M"),
        ({"pattern": "2:4", "sparsity": "0.3"}, "drop --sparsity"),
        ({"calib_samples": "0"}, "must be positive"),
        ({"calib_seqlen": "many"}, "not an integer"),
        ({"sequential": "row"}, "'layer' (each layer sees the model compressed so far"),
    ],
)
def test_bad_values_give_one_line_errors(kwargs, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as error:
        build_spec(**kwargs)
    assert "\n" not in str(error.value)


@given(st.floats(min_value=0.0, max_value=0.999, allow_nan=False))
def test_any_fraction_in_range_is_a_valid_sparsity(value):
    assert build_spec(sparsity=value).sparsity == value
