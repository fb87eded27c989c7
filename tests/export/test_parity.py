"""Parity figures cover the outputs a graph has: logits, dimensions or both."""

from __future__ import annotations

import numpy as np

from emodistill.bundle import DIMENSIONS, LOGITS
from export.parity import agreement_of, max_abs_probability

RNG = np.random.default_rng(0)
LOGITS_8 = RNG.normal(size=(8, 4)).astype(np.float32)
DIMS_8 = RNG.uniform(size=(8, 3)).astype(np.float32)


def test_a_dimensions_only_graph_is_compared_on_its_dimensions_alone():
    shifted = {DIMENSIONS: DIMS_8 + 0.25}
    figures = agreement_of(shifted, {DIMENSIONS: DIMS_8})
    assert figures.keys() == {"max_abs_dimension"}  # no argmax of logits that do not exist
    assert abs(figures["max_abs_dimension"] - 0.25) < 1e-6  # float32 rounding of 0.25 + x
    assert max_abs_probability(shifted, {DIMENSIONS: DIMS_8}) == {}


def test_a_graph_with_both_outputs_is_compared_on_both():
    swapped = LOGITS_8.copy()
    swapped[0] = -swapped[0]  # moves the first clip's argmax
    figures = agreement_of(
        {LOGITS: swapped, DIMENSIONS: DIMS_8}, {LOGITS: LOGITS_8, DIMENSIONS: DIMS_8}
    )
    assert list(figures) == ["argmax_agreement", "max_abs_probability", "max_abs_dimension"]
    assert figures["argmax_agreement"] == 7 / 8 and figures["max_abs_dimension"] == 0.0
    assert figures["max_abs_probability"] > 0
