import math

import pytest

from teachgym import Examples, InvalidActionError, Mixture, Request, Skill, Synthesize
from teachgym.types import action_to_dict, validate_action

SKILLS = [Skill("a"), Skill("b", levels=(1, 2))]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (Mixture({"a": 1.0, "zz": 1.0}), "unknown skills ['zz']"),
        (Mixture({"a": -0.1, "b": 1.0}), "negative"),
        (Mixture({"a": math.nan, "b": 1.0}), "not finite"),
        (Mixture({"a": math.inf}), "not finite"),
        (Mixture({"a": 0.0, "b": 0.0}), "all zero"),
        (Mixture({}), "non-empty"),
        (Mixture({"a": "x"}), "not a number"),
        (Synthesize([]), "no requests"),
        (Synthesize([Request("zz", 3)]), "unknown skill 'zz'"),
        (Synthesize([Request("a", 0)]), "n must be an int >= 1"),
        (Synthesize([Request("b", 3, level=7)]), "levels: [1, 2]"),
        (Examples([]), "no rows"),
        (Examples([{"prompt": "1+1="}]), "lacks ['completion', 'skills']"),
        (Examples([{"prompt": "1+1=", "completion": "2", "skills": ["zz"]}]), "unknown or no skills"),
        ({"a": 1.0}, "must return Mixture, Synthesize or Examples"),
        (None, "must return Mixture"),
    ],
)
def test_validate_action_rejects_garbage(action, message):
    with pytest.raises(InvalidActionError) as e:
        validate_action(action, SKILLS)
    assert message in str(e.value)


def test_validate_action_accepts_good_actions():
    validate_action(Mixture({"a": 3, "b": 1}), SKILLS)
    validate_action(Mixture({"a": 1.0}), SKILLS)  # left-out skills get weight 0
    validate_action(Synthesize([Request("b", 4, level=2), Request("a", 1)]), SKILLS)
    validate_action(Examples([{"prompt": "1+1=", "completion": "2", "skills": "a"}]), SKILLS)
    with pytest.raises(InvalidActionError):  # the same shapes, one value off, are refused
        validate_action(Mixture({"a": 3, "b": -1}), SKILLS)


def test_action_to_dict_normalises_weights():
    assert action_to_dict(Mixture({"a": 3, "b": 1})) == {"type": "mixture", "weights": {"a": 0.75, "b": 0.25}}
    assert action_to_dict(Synthesize([Request("a", 2)])) == {
        "type": "synthesize",
        "requests": [{"skill": "a", "n": 2, "level": None}],
    }
    assert action_to_dict(None) is None
