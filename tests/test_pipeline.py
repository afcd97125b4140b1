"""Validation and the step DAG, from notebooks written on the fly (no kernels)."""
import pytest

from jupyter_mlops.errors import NotebookError
from jupyter_mlops.pipeline import build_pipeline


def problems(make_notebook, cells):
    with pytest.raises(NotebookError) as info:
        build_pipeline(make_notebook(cells))
    return info.value.problems


def test_example_pipeline_edges_inputs_and_parameters(example):
    p = build_pipeline(example("digits.ipynb"))
    assert [s.name for s in p.steps] == ["data", "train", "evaluate", "serve"]
    train = p.step("train")
    assert train.inputs == {"X_train": "data", "y_train": "data"}
    assert set(train.parameters) == {"C", "gamma", "seed"}
    assert set(p.step("data").outputs) >= {"X_train", "y_train", "X_test", "y_test"}
    assert ("data", "train") in p.edges and ("train", "evaluate") in p.edges
    assert p.parameters["C"].type == "float" and p.parameters["seed"].type == "int"
    # a sweep over C can share the data step; over test_size it cannot
    assert p.reached_by({"C"}) == {"train", "evaluate", "serve"}
    assert p.reached_by({"test_size"}) == {"data", "train", "evaluate", "serve"}


def test_kale_notebook_is_read(example):
    p = build_pipeline(example("kale_breast_cancer.ipynb"))
    assert [s.name for s in p.steps] == ["load_data", "train_model", "evaluate_model", "pipeline_metrics"]
    assert p.step("pipeline_metrics").metrics == ["test_accuracy", "train_accuracy"]
    assert set(p.parameters) == {"C", "max_iter"}


def test_a_metrics_cell_logs_the_names_it_shows_not_every_name_it_reads(make_notebook):
    """Kale's `pipeline-metrics` cell lists `print(name)` lines. One that computes its metric first
    (`accuracy = clf.score(X, y)` then `print(accuracy)`) logged every name it read, the model too, and the run
    failed there ("metric `clf` must be a number") after training. It logs what it shows: printed or bare names."""
    data = ("from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)", "data")
    train = ("from sklearn.linear_model import LogisticRegression\nclf = LogisticRegression().fit(X, y)", "train")
    cases = [("accuracy = clf.score(X, y)\nprint(accuracy)", ["accuracy"]),
             ("acc = clf.score(X, y)\nn = len(y)\nprint(acc, n)\nprint(f'{acc:.2f}')", ["acc", "n"]),
             ("score = clf.score(X, y)\nscore", ["score"])]
    for source, expected in cases:
        p = build_pipeline(make_notebook([data, train, (source, "pipeline-metrics")]))
        assert p.step("pipeline_metrics").metrics == expected, source
        assert p.step("pipeline_metrics").inputs == {"X": "data", "y": "data", "clf": "train"}
    quiet = build_pipeline(make_notebook([data, train, ("accuracy = clf.score(X, y)", "pipeline-metrics")]))
    assert quiet.step("pipeline_metrics").metrics == []
    assert any("shows no metric" in w and "print(name)" in w for w in quiet.warnings), quiet.warnings


def test_untagged_cells_take_the_role_of_the_nearest_tagged_cell_above(make_notebook):
    p = build_pipeline(make_notebook([("a = 1", "data"), "b = a + 1", ("print(b)", "skip"), "print(a)",
                                      ("s = 1", "setup"), "t = s", ("d = b + t", "train")]))
    assert p.step("data").cells == [0, 1, 3]  # joins the step above; a skip cell is passed over, as in Kale
    assert p.setup_cells == [4, 5]  # joins setup
    assert p.step("train").inputs == {"b": "data"}
    assert any("cell 4 joins step `data` across the skipped cell(s) 3" in w for w in p.warnings)


def test_a_skip_cell_does_not_swallow_the_cells_below_it(make_notebook):
    # the repro: top to bottom, train prints 2; the untagged `x = 2` belongs to the data step
    p = build_pipeline(make_notebook([("x = 1", "data"), ("print(x)", "skip"), "x = 2", ("print(x)", "train")]))
    assert p.step("data").cells == [0, 2]
    assert p.step("train").inputs == {"x": "data"}
    # an empty cell between does not hide the join from the warning
    p = build_pipeline(make_notebook([("x = 1", "data"), ("print(x)", "skip"), "", "x = 2", ("print(x)", "train")]))
    assert p.step("data").cells == [0, 2, 3]
    assert any("cell 4 joins step `data` across the skipped cell(s) 2" in w for w in p.warnings)
    # a skip between setup cells: the cell below it is still setup
    p = build_pipeline(make_notebook([("import math", "setup"), ("math.pi", "skip"), "tau = 2 * math.pi",
                                      ("r = tau", "data")]))
    assert p.setup_cells == [0, 2]


def test_kale_grammar_is_accepted(make_notebook):
    p = build_pipeline(make_notebook([("a = 1", "block:load"), ("b = a", "block:"), ("print(b)", "skip", "prev:load"),
                                      ("c = b * 2", "block:train", "prev:load", "limit:nvidia.com/gpu:1",
                                       "annotation:team.io/owner:vision", "label:tier:gold"),
                                      ("pass", "step:placeholder")]))
    assert p.step("load").cells == [0, 1]
    assert p.step("train").pod == {"limits": {"nvidia.com/gpu": "1"}, "annotations": {"team.io/owner": "vision"},
                                   "labels": {"tier": "gold"}}
    assert any("apply when the pipeline runs on Kubernetes" in w for w in p.warnings)
    assert p.step("placeholder").cells == [4]


def test_a_step_with_no_code_is_a_warning(make_notebook):
    p = build_pipeline(make_notebook([("a = 1", "data"), ("# nothing yet", "train")]))
    assert any("step `train` (cells 2) has no code" in w for w in p.warnings)


def test_a_name_reassigned_later_comes_from_the_last_writer(make_notebook):
    p = build_pipeline(make_notebook([("x = 1", "data"), ("x = x * 2", "step:double"), ("y = x", "train")]))
    assert p.step("double").inputs == {"x": "data"}
    assert p.step("train").inputs == {"x": "double"}
    assert p.step("train").depends_on == ["double"]


def test_imports_are_repeated_not_marshalled(make_notebook):
    p = build_pipeline(make_notebook([("import math\nr = 2", "data"), ("area = math.pi * r ** 2", "train")]))
    assert p.step("train").imports == {"math": "import math"}
    assert p.step("train").inputs == {"r": "data"}


def test_functions_defined_in_a_step_carry_their_globals(make_notebook):
    p = build_pipeline(make_notebook([("scale = 3", "data"), ("def f(v):\n    return v * scale", "train"),
                                      ("out = f(2)", "evaluate")]))
    assert p.step("train").inputs == {"scale": "data"}
    assert p.step("evaluate").inputs == {"f": "train"}


def test_independent_steps_have_no_edge(make_notebook):
    p = build_pipeline(make_notebook([("a = 1", "step:left"), ("b = 2", "step:right"), ("c = a + b", "train")]))
    assert p.step("right").depends_on == []
    assert sorted(p.step("train").depends_on) == ["left", "right"]


def test_unknown_tag(make_notebook):
    found = problems(make_notebook, [("x = 1", "data"), ("y = x", "trian")])
    assert found[0].cell == 2 and "unknown tag `trian`" in found[0].message and "train" in found[0].fix


def test_two_parameters_cells(make_notebook):
    found = problems(make_notebook, [("a = 1", "parameters"), ("b = 2", "parameters"), ("c = a", "data")])
    assert found[0].cell == 2 and "second cell tagged `parameters`" in found[0].message
    assert "cell 1" in found[0].message


def test_name_read_that_nothing_defines(make_notebook):
    found = problems(make_notebook, [("import pandas as pd", "setup"), ("df = load()", "data")])
    assert found[0].cell == 2 and "`load`" in found[0].message and "setup" in found[0].fix


def test_name_defined_only_later_is_an_error(make_notebook):
    found = problems(make_notebook, [("m = fit(X)", "train"), ("def fit(X):\n    return X", "data"),
                                     ("X = 1", "step:x")])
    assert {p.cell for p in found} == {1}
    assert any("`fit`" in p.message for p in found) and any("`X`" in p.message for p in found)


def test_cycle_through_after(make_notebook):
    found = problems(make_notebook, [("a = 1", "data", "after:train"), ("b = a", "train")])
    assert any("cycle" in p.message for p in found)
    cycle = next(p for p in found if "cycle" in p.message)
    assert "after:" in cycle.fix and cycle.cell in (1, 2)


def test_after_unknown_step(make_notebook):
    found = problems(make_notebook, [("a = 1", "data"), ("b = a", "train", "after:dta")])
    assert "`after:dta`" in found[0].message and "after:data" in found[0].fix


def test_no_step_tags_says_how_to_tag(make_notebook):
    found = problems(make_notebook, ["a = 1", "b = a"])
    assert "no cell is tagged" in found[0].message and "Cell Tags" in found[0].fix


def test_serve_without_predict(make_notebook):
    found = problems(make_notebook, [("m = 1", "train"), ("y = m", "serve")])
    assert "predict" in found[0].message and found[0].cell == 2


def test_deleted_name_read_later(make_notebook):
    found = problems(make_notebook, [("tmp = 1\nkeep = 2", "data"), ("del tmp", "step:clean"),
                                     ("x = tmp + keep", "train")])
    assert "deleted" in found[0].message and found[0].cell == 3


def test_syntax_error_names_the_cell(make_notebook):
    found = problems(make_notebook, [("a = (", "data")])
    assert found[0].cell == 1 and "does not parse" in found[0].message


def test_every_problem_is_reported_at_once(make_notebook):
    found = problems(make_notebook, [("a = 1", "parameters"), ("b = 2", "parameters"), ("x = y", "data"),
                                     ("z = 1", "bogus")])
    assert len(found) >= 3


def test_star_import_in_setup_warns_and_relaxes_checks(make_notebook):
    p = build_pipeline(make_notebook([("from math import *", "setup"), ("r = sqrt(2)", "data")]))
    assert any("import *" in w for w in p.warnings)


def test_leading_untagged_cells_warn(make_notebook):
    p = build_pipeline(make_notebook(["import os", ("a = 1", "data")]))
    assert any("cells 1" in w and "setup" in w for w in p.warnings)


def test_parameters_read_by_setup_reach_every_step(make_notebook):
    p = build_pipeline(make_notebook([("n = 3", "parameters"), ("N2 = n * 2", "setup"), ("a = 1", "data"),
                                      ("b = a", "train")]))
    assert p.setup_parameters == ["n"] and p.reached_by({"n"}) == {"data", "train"}


def test_the_pipeline_names_the_metrics_its_code_logs(make_notebook):
    """The panel's sweep form offers these (it offered only Kale's pipeline-metrics names, so none for a notebook
    that logs with log_metrics)."""
    nb = make_notebook([
        ("x = 1", "data"),
        ("from jupyter_mlops import log_metrics\nlog_metrics(accuracy=0.9, f1_macro=x)", "train"),
        ("import jupyter_mlops\nextra = {'loss': 0.1}\njupyter_mlops.log_metrics(**extra, recall=0.5)", "evaluate"),
    ])
    pipeline = build_pipeline(nb)
    assert pipeline.to_dict()["metrics"] == ["accuracy", "f1_macro", "recall"]
    assert pipeline.logged_metrics() is None  # `**extra` hides some: a sweep cannot check a metric's name
