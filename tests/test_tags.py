from jupyter_mlops.tags import CellRole, read_cell_tags


def test_step_kinds_and_named_steps():
    assert read_cell_tags(["train"], 1)[0] == CellRole("step", "train", "train")
    assert read_cell_tags(["step:features"], 1)[0] == CellRole("step", "features", "custom")
    role, problems, _ = read_cell_tags(["step:score", "after:features", "after:train"], 1)
    assert role == CellRole("step", "score", "custom", ("features", "train")) and not problems


def test_kale_tags_read_as_equivalents():
    assert read_cell_tags(["block:load_data"], 1)[0] == CellRole("step", "load_data", "custom")
    assert read_cell_tags(["block:train", "prev:load_data"], 1)[0] == CellRole("step", "train", "train",
                                                                                ("load_data",))
    assert read_cell_tags(["pipeline-parameters"], 1)[0].role == "parameters"
    assert read_cell_tags(["imports"], 1)[0].role == "setup"
    assert read_cell_tags(["functions"], 1)[0].role == "setup"
    assert read_cell_tags(["pipeline-metrics"], 1)[0].kind == "metrics"
    # Kale's pod hints are kept with the step (they shape its pod on Kubernetes), and are no mistake
    role, problems, _ = read_cell_tags(["block:a", "limit:nvidia.com/gpu:1", "annotation:team.io/owner:a:b",
                                        "label:tier:gold"], 1)
    assert problems == []
    assert role.pod == {"limits": {"nvidia.com/gpu": "1"}, "annotations": {"team.io/owner": "a:b"},
                        "labels": {"tier": "gold"}}


def test_what_kale_accepts_is_accepted_with_a_warning_where_we_differ():
    # an empty block:/step: names no step: the cell joins the step above (Kale's reading)
    for tag in ("block:", "step:"):
        role, problems, warnings = read_cell_tags([tag], 5)
        assert role.role == "continue" and problems == []
        assert warnings and "cell 5" in warnings[0] and "joins the step above" in warnings[0]
    # prev: on a skip cell has no effect, in Kale and here
    role, problems, warnings = read_cell_tags(["skip", "prev:load"], 6)
    assert role.role == "skip" and problems == [] and "no effect" in warnings[0]
    # a special tag beside a step tag decides, as in Kale
    role, problems, warnings = read_cell_tags(["block:train", "skip"], 7)
    assert role.role == "skip" and problems == [] and "read as `skip`" in warnings[0]
    role, problems, warnings = read_cell_tags(["imports", "block:train"], 8)
    assert role.role == "setup" and problems == []


def test_malformed_pod_hint_is_a_problem_naming_the_form():
    _, problems, _ = read_cell_tags(["block:a", "limit:cpu"], 3)
    assert problems and "limit:KEY:VALUE" in problems[0].message


def test_untagged_cell_continues():
    assert read_cell_tags([], 3)[0].role == "continue"


def test_unknown_tag_names_the_cell_and_suggests_a_fix():
    _, problems, _ = read_cell_tags(["trian"], 7, "`fit()`")
    assert len(problems) == 1
    text = str(problems[0])
    assert "cell 7" in text and "`trian`" in text and "did you mean `train`" in text


def test_tags_of_other_tools_are_ignored():
    _, problems, _ = read_cell_tags(["data", "hide-input", "remove-output", "injected-parameters"], 2)
    assert problems == []


def test_two_roles_on_one_cell_is_a_problem():
    _, problems, _ = read_cell_tags(["data", "train"], 4)
    assert problems and "more than one role" in problems[0].message and problems[0].cell == 4


def test_step_name_must_be_valid():
    _, problems, _ = read_cell_tags(["step:9 lives"], 5)
    assert problems and "step:NAME" in problems[0].fix
    _, problems, _ = read_cell_tags(["after:9 lives"], 5)
    assert problems
