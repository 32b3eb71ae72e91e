"""tinyalex/recipes.py: the one table of model facts agrees with the networks it builds."""

import pytest

from tinyalex import recipes
from tinyalex.study.summary import layer_rows


@pytest.mark.parametrize("name", recipes.MODEL_NAMES)
def test_each_model_takes_its_input_size_and_only_sizes_that_fit(name):
    S = recipes.input_size(name)
    assert recipes.D2L_RECIPES[name]["resize"] == S and recipes.D2L_RECIPES[name]["model"] == name
    net = recipes.build_model(name)
    rows = layer_rows(net, (1, 1, S, S))
    assert rows[-1]["output_shape"] == (1, 10)
    recipe = recipes.check_recipe({"model": name})
    recipes.check_input_size(net, recipe)               # fits: no error
    assert net.training                                 # the check leaves the mode as it was
    fits = {"alexnet": "193-224", "lenet": "28-31"}.get(name)   # the sizes that work
    if fits is None:         # adaptive pooling or blocks: the arithmetic claims nothing
        assert recipes.sizes_that_fit(net) == []
        return
    with pytest.raises(ValueError, match=f"recipe: {name} cannot take 20x20 inputs "
                                         f"\\(d2l's recipe uses {S}x{S}; the sizes it takes "
                                         f"\\(--resize\\): {fits}\\): .*layer"):
        recipes.check_input_size(net, dict(recipe, resize=20))
    assert net.training


def test_titles_and_unknown_models():
    assert [recipes.title(n) for n in recipes.MODEL_NAMES] == [
        "AlexNet", "LeNet", "VGG-11", "NiN", "GoogLeNet", "ResNet-18", "DenseNet"]
    with pytest.raises(ValueError, match="unknown model 'vgg'; expected one of"):
        recipes.build_model("vgg")
    assert recipes.d2l_lr({"model": "lenet"}) == 0.9 and recipes.d2l_lr({"model": "x"}) is None
