import pytest

from teachgym.config import ConfigError, build_component, flatten, load_config, parse_overrides

BASE = {
    "env": {"name": "arithmetic"},
    "student": {"name": "hf", "model": "tiny"},
    "policy": {"name": "missing-skill", "temperature": 2.0},
}


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("env: {name: arithmetic}\nstudent: {name: hf}\npolicy: {name: uniform}\nloop: {rounds: 2}\n")
    cfg = load_config(path, ["loop.rounds=4", "loop.examples_per_round=50", "policy.name=missing-skill",
                             "policy.floor=0.1", "tracking.enabled=false"])
    assert cfg.loop.rounds == 4 and cfg.loop.examples_per_round == 50
    assert cfg.policy.name == "missing-skill" and cfg.policy.kwargs == {"floor": 0.1}
    assert cfg.tracking.enabled is False


def test_renaming_a_component_drops_its_old_kwargs():
    cfg = load_config(BASE, ["policy.name=uniform"])
    assert cfg.policy.kwargs == {}


def test_unknown_key_names_full_path_and_suggests():
    with pytest.raises(ConfigError) as e:
        load_config(BASE, ["loop.round=3"])
    assert "loop.round: unknown key; did you mean 'loop.rounds'?" in str(e.value)
    with pytest.raises(ConfigError, match="trackin: unknown key; did you mean 'tracking'"):
        load_config({**BASE, "trackin": {}})


def test_ill_typed_key_names_full_path():
    with pytest.raises(ConfigError) as e:
        load_config(BASE, ["loop.rounds=many", "loop.examples_per_round=0"])
    msg = str(e.value)
    assert "loop.rounds: Input should be a valid integer" in msg and "'many'" in msg
    assert "loop.examples_per_round: Input should be greater than or equal to 1" in msg


def test_missing_section_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="policy: Field required"):
        load_config({"env": {"name": "arithmetic"}, "student": {"name": "hf"}})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not of the form key.sub=value"):
        parse_overrides(["loop.rounds"])


def test_component_kwargs_are_checked_against_the_constructor():
    cfg = load_config(BASE, ["policy.temprature=0.5"])
    with pytest.raises(ConfigError) as e:
        build_component("policies", "policy", cfg.policy)
    assert "policy.temprature: unknown key; did you mean 'policy.temperature'?" in str(e.value)
    cfg = load_config(BASE, ["policy.temperature=hot"])
    with pytest.raises(ConfigError, match="policy.temperature: Input should be a valid number"):
        build_component("policies", "policy", cfg.policy)
    cfg = load_config(BASE, ["policy.temperature=0.5"])
    policy = build_component("policies", "policy", cfg.policy, seed=3)  # seed dropped: not accepted
    assert policy.temperature == 0.5


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": {}}) == {"a.b": 1, "a.c.d": 2, "e": {}}


def test_shipped_configs_validate():
    import pathlib

    paths = sorted(pathlib.Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"arithmetic", "arithmetic_grpo", "lego", "strings", "reasoning_gym"}
    for path in paths:
        cfg = load_config(path)
        env = build_component("envs", "env", cfg.env)
        policy = build_component("policies", "policy", cfg.policy)
        assert env.skills and callable(policy.act), path.name
        assert cfg.loop.rounds >= 1 and cfg.loop.examples_per_round >= 1
