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


def test_the_transformer_loaded_alone_is_ipythons():
    """Outside a kernel the cell transformer is loaded from IPython's file without IPython's package (0.45 s of
    CLI start-up); it must turn cells into the same Python as IPython's own."""
    import subprocess
    import sys

    code = """
import sys
from jupyter_mlops import analysis
cells = ["%matplotlib inline\\nx = 1", "!pip list", "files = !ls $data_dir", "%%time\\nm = fit(X)\\n",
         "df?", "%%bash\\necho hi\\n", "y = %time f(2)", "  %load_ext foo"]
alone = [analysis.to_python(c) for c in cells]
assert "IPython" not in sys.modules
from IPython.core.inputtransformer2 import TransformerManager
print(alone == [TransformerManager().transform_cell(c) for c in cells])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stdout + done.stderr
