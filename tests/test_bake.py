"""Bake tests for the cookiecutter-sail template.

Each bake takes a few seconds (the post-gen hook runs git and DVC), so the two good bakes are
module-scoped and shared by the checks below; invalid answers never get past the pre-gen hook.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml
from configobj import ConfigObj
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config

from sail_pipelines.config import parse_params
from sail_pipelines.contract.schema import load_schema

TEMPLATE = Path(__file__).resolve().parents[1] / "cookiecutter-sail"
DELIMITERS = ("{{", "}}", "{%", "%}")
# GitHub Actions expressions, which the generated workflows must keep (raw blocks in the template).
GITHUB_EXPRESSION = re.compile(r"\$\{\{[^{}]*\}\}")
BREAST_CANCER_FEATURES = 30
DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]

# What each good bake is asked, and what its project must then contain.
BAKES = {
    "defaults": {
        "extra_context": {},
        "slug": "sail-model",
        "module": "sail_model",
        "task": "classification",
        "primary": "roc_auc",
        "thresholds": {"roc_auc": (0.95, None), "f1": (0.9, None)},
        "tolerance": 0.01,
        "candidates": [
            "LogisticRegression",
            "RandomForestClassifier",
            "HistGradientBoostingClassifier",
        ],
    },
    "regression": {
        "extra_context": {
            "project_name": "Diabetes Progression",
            "module_name": "progression_stl",
            "description": 'Predicts "disease progression" one year after baseline',
            "author_name": "Ada O'Neil",
            "task": "regression",
            "min_roc_auc": "1",  # boundary values are accepted
            "min_r2": "0.4",
            "regression_tolerance": "0.5",
        },
        "slug": "diabetes-progression",
        "module": "progression_stl",
        "task": "regression",
        "primary": "r2",
        "thresholds": {"r2": (0.4, None), "rmse": (None, 70.0)},
        "tolerance": 0.5,
        "candidates": ["Ridge", "RandomForestRegressor", "HistGradientBoostingRegressor"],
    },
}


def git(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=check)


def cruft_home(template: Path) -> tuple[str, str | None]:
    """Where .cruft.json must point: the git repository holding the template, and its folder."""
    top = git(template, "rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0:
        return str(template), None
    root = Path(top.stdout.strip()).resolve()
    folder = template.resolve().relative_to(root).as_posix()
    return str(root), None if folder == "." else folder


def write_gitconfig(path: Path, identity: bool) -> Path:
    # init.defaultBranch=master proves the hook forces branch main.
    text = "[init]\n\tdefaultBranch = master\n"
    if identity:
        text += "[user]\n\tname = Bake Test\n\temail = bake@example.com\n"
    path.write_text(text)
    return path


def isolated_git(monkeypatch: pytest.MonkeyPatch, gitconfig: Path) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_DIR",
    ):
        monkeypatch.delenv(var, raising=False)


def cookiecutter_config(tmp: Path) -> Path:
    """A user config that keeps replay files and clones out of the home directory."""
    config = tmp / "cookiecutter-config.yaml"
    config.write_text(
        yaml.safe_dump({"cookiecutters_dir": str(tmp / "cc"), "replay_dir": str(tmp / "replay")})
    )
    return config


@pytest.fixture(scope="module", params=sorted(BAKES))
def baked(request, cookies_session, tmp_path_factory):
    expected = BAKES[request.param]
    gitconfig = write_gitconfig(tmp_path_factory.mktemp("git") / "gitconfig", identity=True)
    with pytest.MonkeyPatch.context() as mp:
        isolated_git(mp, gitconfig)
        result = cookies_session.bake(
            extra_context=expected["extra_context"], template=str(TEMPLATE)
        )
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    project = result.project_path
    assert project.name == expected["slug"]
    return project, expected, result.context


def test_expected_files_exist(baked):
    project, expected, _ = baked
    module = expected["module"]
    for rel in (
        "params.yaml",
        "schemas/params.schema.json",
        "schemas/infrastructure.schema.json",
        "dvc.yaml",
        "README.md",
        "pyproject.toml",
        ".gitignore",
        ".dvcignore",
        ".cruft.json",
        "contracts/schema.yaml",
        "data/raw/data.csv",
        "data/raw/data.csv.dvc",
        f"src/{module}/__init__.py",
        f"src/{module}/transform.py",
        "tests/test_transform.py",
        "tests/test_contract.py",
        "tests/test_params.py",
        ".dvc/config",
    ):
        assert (project / rel).is_file(), rel
    assert not (project / "_task").exists(), "the unused task folder must be removed"
    assert not list(project.rglob("__pycache__"))


def template_syntax_left(project: Path) -> list[str]:
    """Every Jinja delimiter left in a generated file, as "path: delimiter"."""
    offenders = []
    for path in project.rglob("*"):
        parts = path.relative_to(project).parts
        # git's and DVC's own runtime state (e.g. DVC's JSON lock file) is not generated text.
        if (
            not path.is_file()
            or parts[0] == ".git"
            or parts[:2] in ((".dvc", "tmp"), (".dvc", "cache"))
        ):
            continue
        # Every file, UTF-8 or not: one cookiecutter takes for binary is copied without rendering.
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        if parts[:2] == (".github", "workflows"):
            # `${{ ... }}` is GitHub's; nothing else may survive
            text = GITHUB_EXPRESSION.sub("", text)
        offenders += [f"{path.relative_to(project)}: {d}" for d in DELIMITERS if d in text]
    return offenders


def test_no_template_syntax_survives(baked):
    project, _, _ = baked
    assert template_syntax_left(project) == []


def test_template_syntax_is_found_in_a_file_that_is_not_utf8(tmp_path):
    (tmp_path / "notes.txt").write_bytes(
        "caf\u00e9 {{ cookiecutter.project_name }}\n".encode("latin-1")
    )
    assert template_syntax_left(tmp_path) == ["notes.txt: {{", "notes.txt: }}"]


def test_params_parse_with_sail_pipelines(baked):
    project, expected, _ = baked
    params = parse_params(yaml.safe_load((project / "params.yaml").read_text()))
    module = expected["module"]
    assert params.task == expected["task"]
    assert params.raw_data == "data/raw/data.csv" and params.target == "target"
    assert params.transform == f"{module}.transform:build_transformer"
    assert params.split.stratify == (expected["task"] == "classification")
    assert [c.estimator.rsplit(".", 1)[1] for c in params.candidates] == expected["candidates"]
    assert params.gate.registered_model == module
    assert params.gate.primary_metric == expected["primary"]
    assert params.gate.tolerance == pytest.approx(expected["tolerance"])
    assert {t.metric: (t.minimum, t.maximum) for t in params.gate.thresholds} == expected[
        "thresholds"
    ]
    assert params.validation.min_rows == 50
    searched = {c.name: c.search for c in params.candidates if c.search}
    assert len(searched) == 1 and next(iter(searched.values())).trials == 8  # the shipped example


def test_dvc_yaml_stages(baked):
    project, expected, _ = baked
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["validate", "split", "train", "evaluate"]
    for name, stage in stages.items():
        assert stage["cmd"] == f"sail {name}"
    assert f"src/{expected['module']}" in stages["train"]["deps"]
    assert (project / "src" / expected["module"]).is_dir()
    assert stages["evaluate"]["metrics"] == [{"reports/metrics.json": {"cache": False}}]


def test_schema_matches_the_data(baked):
    project, expected, _ = baked
    schema = load_schema(project / "contracts" / "schema.yaml")
    data = pd.read_csv(project / "data" / "raw" / "data.csv")
    assert list(data.columns) == schema.feature_names + [schema.target.name]
    assert schema.target.name == "target"
    if expected["task"] == "classification":
        assert len(schema.features) == BREAST_CANCER_FEATURES
        assert "mean_radius" in schema.feature_names
        assert {c.type for c in schema.features} == {"float"}
        assert schema.target.type == "int" and list(schema.target.values) == [0, 1]
        assert set(data["target"].unique()) == {0, 1} and len(data) == 569
    else:
        assert schema.feature_names == DIABETES_FEATURES
        sex = next(c for c in schema.features if c.name == "sex")
        assert sex.type == "category" and list(sex.values) == [1, 2]
        assert set(data["sex"].unique()) == {1, 2}
        assert schema.target.type == "float" and schema.target.values is None
        assert len(data) == 442


def test_data_is_tracked_by_dvc_with_a_local_default_remote(baked):
    project, _, _ = baked
    data = (project / "data" / "raw" / "data.csv").read_bytes()
    out = yaml.safe_load((project / "data" / "raw" / "data.csv.dvc").read_text())["outs"][0]
    assert out["path"] == "data.csv"
    assert out["md5"] == hashlib.md5(data).hexdigest()
    config = ConfigObj(str(project / ".dvc" / "config"))
    assert config["core"]["remote"] == "local"
    assert config["core"]["analytics"] == "false"
    # relative to .dvc/, i.e. <project>/dvc-storage
    assert config['remote "local"']["url"] == "../dvc-storage"


def test_git_repository_is_initialized_and_committed(baked):
    project, _, _ = baked
    assert (project / ".git").is_dir()
    assert git(project, "symbolic-ref", "HEAD").stdout.strip() == "refs/heads/main"
    assert len(git(project, "log", "--format=%H").stdout.split()) == 1
    assert git(project, "status", "--porcelain").stdout == "", (
        "everything should be in the initial commit"
    )
    tracked = set(git(project, "ls-files").stdout.split())
    assert {"data/raw/data.csv.dvc", ".dvc/config", ".cruft.json", "params.yaml"} <= tracked
    assert "data/raw/data.csv" not in tracked, "the data itself belongs to DVC"
    for ignored in ("data/raw/data.csv", "dvc-storage/x", ".mlflow/x", "reports/gate.json"):
        assert git(project, "check-ignore", "-q", ignored, check=False).returncode == 0, ignored


def test_cruft_json(baked):
    project, expected, context = baked
    state = json.loads((project / ".cruft.json").read_text())
    assert {"template", "commit", "checkout", "context", "directory"} <= set(state)
    assert (state["template"], state["directory"]) == cruft_home(TEMPLATE)
    head = git(TEMPLATE, "rev-parse", "--verify", "-q", "HEAD", check=False)
    assert state["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert state["checkout"] is None
    answers = state["context"]["cookiecutter"]
    for key, value in context.items():
        if not key.startswith("_"):
            assert answers[key] == value, key
    for key, value in expected["extra_context"].items():
        assert answers[key] == value, key
    assert (
        answers["project_slug"] == expected["slug"] and answers["module_name"] == expected["module"]
    )
    assert "_output_dir" not in answers
    assert {".git", ".cruft.json"} <= set(state.get("skip", []))


def test_project_pyproject(baked):
    project, expected, context = baked
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == expected["slug"]
    package = tomllib.loads((TEMPLATE.parent / "pipelines" / "pyproject.toml").read_text())
    pin = f"sail-pipelines=={package['project']['version']}"
    assert pin in pyproject["project"]["dependencies"], "pinned to the release it was made from"
    assert context["sail_pipelines_version"] == f"v{package['project']['version']}"
    assert pyproject["project"]["description"] == context["description"]
    assert pyproject["project"]["authors"] == [{"name": context["author_name"]}]
    pytest_options = pyproject["tool"]["pytest"]["ini_options"]
    assert pytest_options["pythonpath"] == ["src"] and pytest_options["testpaths"] == ["tests"]


@pytest.mark.slow
def test_baked_project_tests_pass(baked):
    project, _, _ = baked
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


@pytest.mark.slow
def test_the_generated_params_test_fails_on_a_bad_parameter_value(baked, tmp_path):
    """scikit-learn accepts any value until fit(): the project's test_params.py fits each
    candidate, so a bad value fails there, naming the candidate."""
    project, _, _ = baked
    copy = tmp_path / project.name
    shutil.copytree(project, copy, symlinks=True)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    forest = next(c for c in params["candidates"] if ".RandomForest" in c["estimator"])
    forest["params"]["max_depth"] = "deep"
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_params.py"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert f"{forest['name']}: The 'max_depth' parameter of RandomForest" in proc.stdout, (
        proc.stdout[-3000:]
    )
    assert "Got 'deep' instead" in proc.stdout and "1 failed" in proc.stdout


# --- answers the template must refuse -------------------------------------------------------

INVALID = [
    pytest.param({"project_slug": "My Proj"}, "project_slug", id="bad-slug"),
    pytest.param({"module_name": "my-module"}, "module_name", id="bad-module-name"),
    pytest.param({"module_name": "class"}, "module_name", id="keyword-module-name"),
    pytest.param({"task": "ranking"}, "task", id="unknown-task"),
    pytest.param({"min_roc_auc": "1.5"}, "min_roc_auc", id="roc-auc-above-1"),
    pytest.param({"min_roc_auc": "abc"}, "min_roc_auc", id="roc-auc-not-a-number"),
    pytest.param({"min_r2": "-0.1"}, "min_r2", id="r2-negative"),
    pytest.param({"regression_tolerance": "0.9"}, "regression_tolerance", id="tolerance-above-0.5"),
    pytest.param(
        {"sail_pipelines_version": "main"}, "sail_pipelines_version", id="version-not-a-release-tag"
    ),
    pytest.param(
        {"sail_pipelines_repo": "no-owner"}, "sail_pipelines_repo", id="repo-without-owner"
    ),
    pytest.param(
        {"approvers": "ml approvers; rm -rf /"}, "approvers", id="approvers-with-shell-text"
    ),
    pytest.param(
        {"retrain_on_breach": "sometimes"}, "retrain_on_breach", id="retrain-not-yes-or-no"
    ),
]


def error_lines(stderr: str, key: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if line.startswith("ERROR: ") and re.search(rf"\b{key}\b", line)
    ]


def replay_file(tmp: Path, bad: dict) -> Path:
    """A replay file with the bad answer: replays skip cookiecutter's own checks (choices included),
    the way a hand-edited .cruft.json or replay would, so the pre-gen hook is what must catch it."""
    context = generate_context(context_file=str(TEMPLATE / "cookiecutter.json"))
    answers = prompt_for_config(context, no_input=True)
    answers.update(bad)
    path = tmp / "replay" / "cookiecutter-sail.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cookiecutter": answers}))
    return path


@pytest.mark.parametrize(("bad", "key"), INVALID)
def test_pre_gen_hook_rejects_invalid_answer(bad, key, tmp_path, capfd):
    out = tmp_path / "out"
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(TEMPLATE),
            replay=str(replay_file(tmp_path, bad)),
            output_dir=str(out),
            config_file=str(cookiecutter_config(tmp_path)),
        )
    lines = error_lines(capfd.readouterr().err, key)
    assert len(lines) == 1, lines
    assert not out.exists() or not any(out.iterdir()), "a failed bake must leave nothing behind"


@pytest.mark.parametrize(("bad", "key"), INVALID)
def test_cli_bake_with_invalid_answer_fails_with_one_clear_line(bad, key, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "cookiecutter",
        "--no-input",
        "--config-file",
        str(cookiecutter_config(tmp_path)),
    ]
    cmd += ["-o", str(out), str(TEMPLATE), *(f"{k}={v}" for k, v in bad.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    if key in ("task", "retrain_on_breach"):
        # cookiecutter itself refuses an unknown choice given on the command line, before any hook.
        pattern = rf"^ValueError: .*\b{re.escape(bad[key])}\b.*\b{key}\b"
        assert re.search(pattern, proc.stderr, re.M), proc.stderr
    else:
        assert len(error_lines(proc.stderr, key)) == 1, proc.stderr
    assert not out.exists() or not any(out.iterdir()), "a failed bake must leave nothing behind"


# --- post-generation edge cases -------------------------------------------------------------


def test_bake_without_git_identity_stages_but_does_not_commit(tmp_path, monkeypatch):
    """Also bakes from a relative template path: .cruft.json must still get the absolute one."""
    isolated_git(monkeypatch, write_gitconfig(tmp_path / "gitconfig", identity=False))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "cookiecutter",
        "--no-input",
        "--config-file",
        str(cookiecutter_config(tmp_path)),
    ]
    cmd += ["-o", str(out), TEMPLATE.name, "project_name=No Identity"]
    proc = subprocess.run(cmd, cwd=TEMPLATE.parent, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "NOTE: git user.name/user.email are not set" in proc.stdout
    project = out / "no-identity"
    assert git(project, "symbolic-ref", "HEAD").stdout.strip() == "refs/heads/main"
    assert git(project, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0, (
        "no commit expected"
    )
    staged = set(git(project, "diff", "--cached", "--name-only").stdout.split())
    assert {"params.yaml", "data/raw/data.csv.dvc", ".cruft.json"} <= staged
    state = json.loads((project / ".cruft.json").read_text())
    assert (state["template"], state["directory"]) == cruft_home(TEMPLATE)


def test_cruft_follows_a_template_under_git(tmp_path, monkeypatch):
    """With the template committed, .cruft.json records the commit and `cruft check` accepts it."""
    import cruft

    isolated_git(monkeypatch, write_gitconfig(tmp_path / "gitconfig", identity=True))
    template = tmp_path / "cookiecutter-sail"
    shutil.copytree(TEMPLATE, template, ignore=shutil.ignore_patterns("__pycache__"))
    git(template, "init", "-q")
    git(template, "add", "-A")
    git(template, "commit", "-q", "-m", "template")
    sha = git(template, "rev-parse", "HEAD").stdout.strip()
    project = Path(
        cookiecutter(
            str(template),
            no_input=True,
            output_dir=str(tmp_path / "out"),
            config_file=str(cookiecutter_config(tmp_path)),
        )
    )
    state = json.loads((project / ".cruft.json").read_text())
    assert state["template"] == str(template) and state["commit"] == sha
    assert cruft.check(project_dir=project) is True


def test_post_gen_hook_fails_cleanly_without_dvc(tmp_path, monkeypatch):
    fake = tmp_path / "fake-site" / "dvc"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("No module named dvc (simulated)")\n')
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    isolated_git(monkeypatch, write_gitconfig(tmp_path / "gitconfig", identity=True))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "cookiecutter",
        "--no-input",
        "--config-file",
        str(cookiecutter_config(tmp_path)),
    ]
    proc = subprocess.run(
        [*cmd, "-o", str(out), str(TEMPLATE)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    lines = error_lines(proc.stderr, "dvc")
    assert len(lines) == 1 and "cannot be imported" in lines[0], proc.stderr
    assert not out.exists() or not any(out.iterdir()), "a failed bake must leave nothing behind"


def test_template_hooks_render_without_leftover_syntax():
    """The hooks are Jinja templates too: only the intended expressions may appear in them."""
    for hook in (TEMPLATE / "hooks").glob("*.py"):
        text = hook.read_text()
        assert "{#" not in text, hook  # would start a Jinja comment
        for expression in re.findall(r"\{\{(.*?)\}\}", text):
            assert expression.strip().startswith("cookiecutter"), (hook.name, expression)


@pytest.mark.slow
def test_cruft_updates_a_project_baked_from_the_template_folder_of_a_tagged_clone(
    tmp_path, monkeypatch
):
    """The documented way (cookiecutter on cookiecutter-sail/ of a checkout) gives a project that
    `cruft check` and `cruft update` accept: .cruft.json names the repository and its folder."""
    import cruft

    isolated_git(monkeypatch, write_gitconfig(tmp_path / "gitconfig", identity=True))
    repo = tmp_path / "sail-pipelines"
    repo.mkdir()
    shutil.copytree(
        TEMPLATE, repo / "cookiecutter-sail", ignore=shutil.ignore_patterns("__pycache__")
    )
    (repo / "README.md").write_text("sail-pipelines\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "release")
    git(repo, "tag", "v0.1.0")
    project = Path(
        cookiecutter(
            str(repo / "cookiecutter-sail"),
            no_input=True,
            output_dir=str(tmp_path / "out"),
            config_file=str(cookiecutter_config(tmp_path)),
            extra_context={"project_name": "Kept Answers", "author_name": "Grace"},
        )
    )
    state = json.loads((project / ".cruft.json").read_text())
    assert (state["template"], state["directory"]) == (str(repo.resolve()), "cookiecutter-sail")
    assert cruft.check(project_dir=project) is True

    readme = repo / "cookiecutter-sail" / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(readme.read_text() + "\nA line the template gained after v0.1.0.\n")
    git(repo, "commit", "-q", "-am", "template: a new README line")
    assert cruft.check(project_dir=project) is False, "the project is behind the template now"

    proc = subprocess.run(
        [sys.executable, "-m", "cruft", "update", "--skip-apply-ask", "-y"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "A line the template gained after v0.1.0." in (project / "README.md").read_text()
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == git(repo, "rev-parse", "HEAD").stdout.strip()
    answers = state["context"]["cookiecutter"]
    assert (answers["project_name"], answers["author_name"]) == ("Kept Answers", "Grace")
    assert project.name == "kept-answers" and (project / "src" / "kept_answers").is_dir()
    assert cruft.check(project_dir=project) is True
