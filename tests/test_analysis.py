from jupyter_mlops.analysis import analyze_source


def names(src):
    return analyze_source(src)


def test_magics_and_shell_lines_parse():
    result = names("%matplotlib inline\n!pip list\nfiles = !ls $data_dir\nx = 1")
    assert result.syntax_error is None
    assert set(result.writes) == {"files", "x"}
    assert "data_dir" in result.reads


def test_time_magics_analyse_their_code():
    assert set(names("%time model = fit(X)").writes) == {"model"}
    cell = names("%%time\nmodel = fit(X_train)\n")
    assert set(cell.writes) == {"model"} and "X_train" in cell.reads


def test_capture_magic_binds_its_variable():
    assert "out" in names("%%capture out\nprint(1)\n").writes


def test_function_only_cell_reads_nothing_now():
    cell = names("def score(m, X):\n    return m.score(X, y_true) * weight\n")
    assert cell.reads == [] and set(cell.writes) == {"score"} and cell.functions == {"score"}
    assert cell.deferred == {"y_true", "weight"}


def test_augmented_assignment_reads_first():
    cell = names("x += 1")
    assert cell.reads == ["x"] and "x" in cell.writes


def test_value_is_read_before_target_is_written():
    assert names("x = x + 1").reads == ["x"]
    assert names("x = 1\ny = x").reads == []


def test_del_reads_and_unbinds():
    cell = names("del old")
    assert cell.reads == ["old"] and cell.deletes == {"old"} and "old" not in cell.writes
    cell = names("tmp = 1\ndel tmp")
    assert cell.reads == [] and "tmp" not in cell.writes


def test_comprehension_and_lambda_scopes():
    cell = names("squares = [i * k for i in items if i > low]")
    assert set(cell.reads) == {"items", "low", "k"} and "i" not in cell.reads and set(cell.writes) == {"squares"}
    cell = names("f = lambda q: q + offset")
    assert cell.reads == [] and cell.deferred == {"offset"}
    cell = names("d = {k: v for k, v in pairs}")
    assert cell.reads == ["pairs"]


def test_global_statement_in_function_writes_the_global():
    cell = names("def setup():\n    global counter\n    counter = 0\n")
    assert "counter" in cell.writes


def test_star_import_is_recorded():
    assert names("from math import *").star_imports == ["math"]


def test_imports_are_recorded_as_statements():
    cell = names("import numpy as np\nfrom sklearn.svm import SVC")
    assert cell.writes == {"np": "import numpy as np", "SVC": "from sklearn.svm import SVC"}


def test_subscript_assignment_is_a_new_version():
    cell = names("df['total'] = df.a + df.b")
    assert cell.reads == ["df"] and "df" in cell.writes


def test_class_body_scope():
    cell = names("class Model:\n    size = 3\n    area = size * scale\n")
    assert cell.reads == ["scale"] and set(cell.writes) == {"Model"}


def test_exception_name_and_with_targets():
    cell = names("try:\n    pass\nexcept ValueError as err:\n    print(err)\nwith open(p) as fh:\n    data = fh.read()")
    assert set(cell.writes) == {"err", "fh", "data"} and "p" in cell.reads


def test_syntax_error_is_reported_with_line():
    assert names("x = (1,\n").syntax_error.startswith("line")
