from jupyter_mlops.tags import CellRole, read_cell_tags


def test_step_kinds_and_named_steps():
    assert read_cell_tags(["train"], 1)[0] == CellRole("step", "train", "train")
    assert read_cell_tags(["step:features"], 1)[0] == CellRole("step", "features", "custom")
    role, problems = read_cell_tags(["step:score", "after:features", "after:train"], 1)
    assert role == CellRole("step", "score", "custom", ("features", "train")) and not problems


def test_kale_tags_read_as_equivalents():
    assert read_cell_tags(["block:load_data"], 1)[0] == CellRole("step", "load_data", "custom")
    assert read_cell_tags(["block:train", "prev:load_data"], 1)[0] == CellRole("step", "train", "train",
                                                                                ("load_data",))
    assert read_cell_tags(["pipeline-parameters"], 1)[0].role == "parameters"
    assert read_cell_tags(["imports"], 1)[0].role == "setup"
    assert read_cell_tags(["functions"], 1)[0].role == "setup"
    assert read_cell_tags(["pipeline-metrics"], 1)[0].kind == "metrics"
    # Kale's Kubernetes hints mean nothing locally, and are no mistake
    assert read_cell_tags(["block:a", "limit:nvidia.com/gpu:1", "annotation:x:y"], 1)[1] == []


def test_untagged_cell_continues():
    assert read_cell_tags([], 3)[0].role == "continue"


def test_unknown_tag_names_the_cell_and_suggests_a_fix():
    _, problems = read_cell_tags(["trian"], 7, "`fit()`")
    assert len(problems) == 1
    text = str(problems[0])
    assert "cell 7" in text and "`trian`" in text and "did you mean `train`" in text


def test_tags_of_other_tools_are_ignored():
    _, problems = read_cell_tags(["data", "hide-input", "remove-output", "injected-parameters"], 2)
    assert problems == []


def test_two_roles_on_one_cell_is_a_problem():
    _, problems = read_cell_tags(["data", "train"], 4)
    assert problems and "more than one role" in problems[0].message and problems[0].cell == 4


def test_step_name_must_be_valid():
    _, problems = read_cell_tags(["step:"], 5)
    assert problems and "step:NAME" in problems[0].fix
    _, problems = read_cell_tags(["after:9 lives"], 5)
    assert problems
