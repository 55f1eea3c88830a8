import sys
import textwrap

import pytest

from teachgym import registry
from teachgym.registry import RegistryError, resolve


def test_builtins_resolve_lazily():
    for kind in registry.KINDS:
        for name in registry.BUILTINS[kind]:
            assert callable(resolve(kind, name)), (kind, name)


def test_import_path():
    from teachgym.policies.uniform import UniformPolicy

    assert resolve("policies", "teachgym.policies.uniform:UniformPolicy") is UniformPolicy


def test_unknown_name_suggests_near_names():
    with pytest.raises(RegistryError) as e:
        resolve("policies", "missing-skil")
    assert "Did you mean 'missing-skill'?" in str(e.value)
    assert "uniform" in str(e.value)  # the known names are listed
    with pytest.raises(RegistryError, match="unknown env 'arithmatic'. Did you mean 'arithmetic'"):
        resolve("envs", "arithmatic")


def test_bad_import_paths():
    with pytest.raises(RegistryError, match="cannot import module"):
        resolve("policies", "no_such_module_xyz:Thing")
    with pytest.raises(RegistryError, match="did you mean UniformPolicy"):
        resolve("policies", "teachgym.policies.uniform:UniformPolicyy")


def test_entry_point_plugin(tmp_path, monkeypatch):
    """A package that declares a `teachgym.policies` entry point is found by name."""
    pkg = tmp_path / "my_teachers.py"
    pkg.write_text(
        textwrap.dedent(
            '''
            from teachgym import Mixture

            class Greedy:
                """Puts everything on the first skill."""

                def act(self, obs):
                    return Mixture({obs.skill_names[0]: 1.0})

                def state_dict(self):
                    return {}

                def load_state_dict(self, state):
                    pass
            '''
        )
    )
    dist = tmp_path / "my_teachers-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-teachers\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[teachgym.policies]\ngreedy = my_teachers:Greedy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = resolve("policies", "greedy")
    assert cls.__name__ == "Greedy"
    assert "greedy" in registry.names("policies")
    assert ("greedy", "Puts everything on the first skill.  [my_teachers:Greedy]") in registry.describe("policies")
    sys.modules.pop("my_teachers", None)
