"""Generator labels (pools): parsing SURGE_GENERATOR_LABELS, matching, the refusal text."""

from __future__ import annotations

import pytest

from schemas.errors import BadRequest
from services.common import labels
from services.coordinator import slicing
from services.generator.config import Config


def test_labels_parse_pairs_and_skip_empty_values():
    assert labels.parse("zone=eu-1, room=a,,") == {"zone": "eu-1", "room": "a"}
    assert labels.parse("zone=,region=eu") == {"region": "eu"}  # a node without a zone label
    assert labels.parse(["room=a", "zone=x,rack=2"]) == {"room": "a", "zone": "x", "rack": "2"}
    assert labels.parse("") == {}


@pytest.mark.parametrize("bad", ["room", "room=a b", "=a", "ro om=a"])
def test_malformed_labels_are_refused_naming_the_variable(bad):
    with pytest.raises(BadRequest, match="SURGE_GENERATOR_LABELS"):
        labels.parse(bad)
    with pytest.raises(BadRequest, match="SURGE_GENERATOR_LABELS"):
        Config.from_env({"SURGE_GENERATOR_LABELS": bad})


def test_a_generator_matches_when_it_has_every_label_asked_for():
    have = {"room": "a", "zone": "eu-1"}
    assert labels.matches(have, {}) and labels.matches(have, {"room": "a"})
    assert not labels.matches(have, {"room": "b"}) and not labels.matches(have, {"rack": "1"})
    assert labels.show(have) == "room=a,zone=eu-1"


def test_pool_shortfall_names_the_selector_and_what_is_available():
    idle = {"g1": {"room": "a"}, "g2": {"room": "b"}, "g3": {}}
    assert slicing.pool_shortfall({"room": "a"}, 1, idle, busy=0) is None
    assert slicing.pool_shortfall({}, None, idle, busy=0) is None
    msg = slicing.pool_shortfall({"room": "a"}, 2, idle, busy=1)
    assert msg == ("plan asks for 2 generators labelled room=a; 3 idle: 1 × (no labels); "
                   "1 × room=a; 1 × room=b (1 match); 1 busy in other runs")
    assert slicing.pool_shortfall({"room": "c"}, None, idle, 0).endswith("(0 match)")
    assert slicing.pool_shortfall({}, None, {}, 0) == "plan asks for generators; no idle generators are registered"
