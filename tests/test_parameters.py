import pytest

from jupyter_mlops.errors import ParameterError
from jupyter_mlops.parameters import coerce_parameters, read_parameters

CELL = 'C = 1.0  # regularization\nn_estimators = 100\nname = "svc"\nverbose = False\nlayers = [8, 8]\nt: float = 1\n'


def declared():
    params, problems = read_parameters(CELL, 3)
    assert not problems
    return params


def test_types_defaults_and_help_are_read():
    p = declared()
    assert {n: x.type for n, x in p.items()} == {"C": "float", "n_estimators": "int", "name": "str",
                                                 "verbose": "bool", "layers": "list", "t": "float"}
    assert p["C"].default == 1.0 and p["C"].help == "regularization"


def test_cli_strings_are_typed():
    values = coerce_parameters(declared(), {"C": "0.5", "n_estimators": "7", "name": "rf", "verbose": "true",
                                            "layers": "[4, 2]", "t": "3"})
    assert values == {"C": 0.5, "n_estimators": 7, "name": "rf", "verbose": True, "layers": [4, 2], "t": 3.0}
    assert isinstance(values["t"], float)


def test_python_values_are_checked_not_parsed():
    assert coerce_parameters(declared(), {"C": 2, "layers": (1, 2)}) == {"C": 2.0, "layers": [1, 2]}
    with pytest.raises(ParameterError):
        coerce_parameters(declared(), {"n_estimators": 2.5})


def test_unknown_parameter_lists_the_known_ones():
    with pytest.raises(ParameterError) as info:
        coerce_parameters(declared(), {"c": "1"})
    assert "unknown parameter `c`" in str(info.value) and "C" in str(info.value)


def test_wrong_type_names_parameter_type_and_example():
    with pytest.raises(ParameterError) as info:
        coerce_parameters(declared(), {"n_estimators": "lots"})
    text = str(info.value)
    assert "`n_estimators` is int" in text and "'lots'" in text and "pass an int, e.g. -p n_estimators 3" in text


def test_non_assignment_in_parameters_cell_is_a_problem():
    _, problems = read_parameters("C = 1\nprint(C)\nfor i in range(3):\n    pass\n", 2)
    assert len(problems) == 1 and problems[0].cell == 2


def test_expression_default_has_type_any():
    params, _ = read_parameters("path = os.path.join('a', 'b')\n", 1)
    assert params["path"].type == "any" and params["path"].source == "os.path.join('a', 'b')"
