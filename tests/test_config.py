"""The typed config: shipped recipes build, bad keys and types name the fix, one default per setting."""
import inspect

import pytest

from infomax import config as C
from infomax import methods
from infomax.objectives import barlow_twins, info_nce, smi, vicreg


def test_every_method_has_a_cpu_and_a_paper_recipe_and_every_recipe_builds():
    names = C.recipe_names()
    for method in methods.METHODS:
        assert f"{method}-cpu" in names and f"{method}-cifar10" in names
    for name in names:
        config = C.build_config(C.load_recipe(name))
        assert config.method_name == name.rsplit("-", 1)[0]
        assert C.describe(name)


@pytest.mark.parametrize("tree, message", [
    ({"method": {"name": "simclr", "temprature": 0.2}}, "method.temprature; did you mean 'temperature'"),
    ({"method": {"name": "simclr"}, "optim": {"lr": "fast"}}, "optim.lr must be float"),
    ({"method": {"name": "simclr"}, "optim": {"betas": [0.9]}}, "optim.betas must have 2 values"),
    ({"method": {"name": "simclr"}, "schedul": {}}, "did you mean 'schedule'"),
    ({"method": {"name": "simcrl"}}, "unknown method 'simcrl'; choose one of: simclr, barlow_twins"),
    ({"method": {"name": "smi"}, "run": {"devices": 1.5}}, "run.devices must be int"),
])
def test_bad_settings_name_the_fix(tree, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        C.build_config(tree)


def test_set_parses_yaml_values_and_round_trips_through_config_yaml(tmp_path):
    tree = C.load_recipe("smi-cpu")
    for assignment in ("optim.lr=0.05", "optim.weight_decay=1e-6", "method.eps=5e-3", "optim.betas=[0.8, 0.99]", "run.compile=true", "schedule.max_steps=null",
                       "method.within_view=false", "model.options.width=8"):
        C.set_value(tree, assignment)
    config = C.build_config(tree)
    assert config.optim.lr == 0.05 and config.optim.betas == (0.8, 0.99) and config.run.compile is True
    assert config.optim.weight_decay == 1e-6 and config.method.eps == 5e-3  # YAML 1.1 reads 1e-6 as a string
    assert config.method.within_view is False and config.model.options == {"width": 8}
    C.save(config, tmp_path / "config.yaml")
    assert C.load(tmp_path / "config.yaml") == config
    with pytest.raises(ValueError, match="section.key=value"):
        C.set_value(tree, "optim.lr")


def test_method_settings_take_their_defaults_from_the_objectives():
    default = lambda fn, name: inspect.signature(fn).parameters[name].default  # noqa: E731
    assert methods.settings_of("simclr")().temperature == default(info_nce, "temperature")
    assert methods.settings_of("barlow_twins")().lambd == default(barlow_twins, "lambd")
    vic = methods.settings_of("vicreg")()
    assert (vic.sim, vic.var, vic.cov) == tuple(default(vicreg, k) for k in ("sim", "var", "cov"))
    assert methods.settings_of("smi")().lambd == default(smi, "lambd") == 3.0


def test_unknown_recipe_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="smi-cpu"):
        C.load_recipe("smi-cpv")


def test_recipes_verb_lists_every_recipe_with_its_description(capsys):
    from infomax.cli import main

    assert main(["recipes"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == C.recipe_names()
    assert all(len(line.split()) > 3 for line in printed)
