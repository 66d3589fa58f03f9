"""`sail build`: the training and test/metric images of a project, through the Docker SDK.

The images run the very library versions of the environment that runs `sail`: the build
context gets requirement files pinned from it, plus a wheel of this sail-pipelines, so a
bundle trained in a container unpickles on the host and in the inference image alike. The
project's own dependencies (its pyproject.toml, e.g. LightGBM for a candidate) are pinned the
same way, with the Debian packages they need (`[tool.sail] system-packages`), in all three images.
The refs built are recorded in .sail/images.json for the steps that run in them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sail_pipelines.clients import containers
from sail_pipelines.clients.images import ImageNames, code_tag, repository_name
from sail_pipelines.config import Params, ProjectPaths, Settings
from sail_pipelines.errors import SailError
from sail_pipelines.files import read_json, write_atomic, write_json
from sail_pipelines.provenance import PIPELINE_OUTPUTS, git_commit, project_requirements

DOCKERFILE = "docker/Dockerfile"
PACKAGE = "sail-pipelines"
# What the metric image adds to the core: tracking (with S3 artifact stores) and plots.
METRIC_EXTRAS = ("mlflow", "matplotlib", "requests", "boto3")
PYPROJECT = "pyproject.toml"
_DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# What the inference image of a compiled model leaves out of the core: scikit-learn (and what only
# it uses), pandas (batch files are read without it: inference/batch_io.py) and pydantic (serving
# reads no configuration file). The rest of the core goes in: ONNX Runtime (without its tooling
# dependencies, which serving never imports), numpy, the web stack, cryptography (the bundle's
# signature check), metrics and logging.
SERVE_LEAVES_OUT = (
    "scikit-learn",
    "threadpoolctl",
    "joblib",
    "skl2onnx",
    "pandas",
    "pydantic",
    "pydantic-settings",
)
NO_DEPS = ("onnxruntime",)
# The Dockerfile stage the inference image takes its libraries from, by the runtime serving it;
# with serving.explanations on, explain-deps whatever the runtime (predictions still take it).
INFERENCE_DEPS = {"onnx": "serve-deps", "sklearn": "project-deps"}
EXPLAIN_DEPS = "explain-deps"
# What serving.explanations adds to the inference and metric images, beside the core's scikit-learn
# and pandas: SHAP's TreeExplainer (with numba and llvmlite, which shap imports).
EXPLAIN_EXTRAS = ("shap",)
# What the training image adds: the hyperparameter search (Optuna, SQLAlchemy for shared studies).
TRAIN_EXTRAS = ("optuna",)
REPRODUCIBLE_EPOCH = (
    "315532800"  # 1980-01-01: identical wheels for identical code keep Docker's cache
)


@dataclass(frozen=True)
class BuildContext:
    root: Path
    staging: Path  # .sail/build inside the project: requirements and the wheel

    @classmethod
    def of(cls, paths: ProjectPaths) -> "BuildContext":
        return cls(paths.root, paths.root / ".sail" / "build")

    @property
    def record(self) -> Path:
        return self.root / ".sail" / "images.json"


def pinned(
    roots: Iterable[str | Requirement], hint: str = "install sail-pipelines[pipeline]"
) -> dict[str, str]:
    """The installed version of every distribution the roots need, transitively."""
    versions: dict[str, str] = {}
    todo = [r if isinstance(r, Requirement) else Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in versions:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError as exc:
            raise SailError(
                f"{req.name} is not installed in the environment that runs sail: {hint}"
            ) from exc
        versions[name] = dist.version
        for text in dist.requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(
                dep.marker.evaluate({"extra": extra}) for extra in ("", *req.extras)
            ):
                todo.append(dep)
    return versions


def core_requirements() -> list[str]:
    """The core dependencies of the sail-pipelines that goes into the images: the checkout's
    pyproject.toml when this runs from one (its wheel is built from there), else the installed
    metadata."""
    checkout = Path(__file__).resolve().parents[3] / "pyproject.toml"
    if checkout.is_file():
        return list(tomllib.loads(checkout.read_text())["project"]["dependencies"])
    return [r for r in metadata.requires(PACKAGE) or [] if "extra ==" not in r]


def serve_requirements() -> list[Requirement]:
    """The core less what a compiled model's image leaves out (and ONNX Runtime, pinned alone)."""
    core = [Requirement(r) for r in core_requirements()]
    skipped = {canonicalize_name(n) for n in (*SERVE_LEAVES_OUT, *NO_DEPS)}
    return [r for r in core if canonicalize_name(r.name) not in skipped]


def requirement_lines(versions: dict[str, str]) -> bytes:
    return "".join(f"{name}=={version}\n" for name, version in sorted(versions.items())).encode()


def package_source() -> Path:
    """The sail-pipelines source tree this code runs from (a checkout's pipelines/ folder), else the
    one this environment was installed from: the images carry the code that is running."""
    here = Path(__file__).resolve().parents[3]
    if (here / "pyproject.toml").is_file() and (here / "src" / PACKAGE.replace("-", "_")).is_dir():
        return here
    direct = metadata.distribution(PACKAGE).read_text("direct_url.json")
    url = json.loads(direct).get("url", "") if direct else ""
    if not url.startswith("file://") or not (Path(url[7:]) / "pyproject.toml").is_file():
        raise SailError(
            "sail build needs the sail-pipelines source (pip install -e <repo>/pipelines) or "
            "SAIL_WHEEL=<wheel file>"
        )
    return Path(url[7:])


def update(target: Path, data: bytes) -> None:
    """Write only when the bytes change: an untouched file keeps Docker's layer cache."""
    if not target.is_file() or target.read_bytes() != data:
        write_atomic(target, lambda tmp: tmp.write_bytes(data))


def stage_wheel(staging: Path) -> Path:
    wheels = staging / "wheels"
    given = os.environ.get("SAIL_WHEEL")
    with tempfile.TemporaryDirectory() as scratch:
        if given:
            if not Path(given).is_file():
                raise SailError(f"SAIL_WHEEL={given} is not a file")
            built = Path(given)
        else:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--no-deps",
                    "--no-build-isolation",
                    "-w",
                    scratch,
                    str(package_source()),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH},
            )
            if result.returncode != 0:
                raise SailError(
                    "could not build the sail-pipelines wheel: "
                    f"{(result.stderr.strip().splitlines() or ['?'])[-1]}"
                )
            built = next(Path(scratch).glob("*.whl"))
        wheels.mkdir(parents=True, exist_ok=True)
        for old in wheels.glob("*.whl"):
            if old.name != built.name:
                old.unlink()
        update(wheels / built.name, built.read_bytes())
    return wheels / built.name


def system_packages(pyproject: Path) -> list[str]:
    """`[tool.sail] system-packages` of the project: Debian packages its dependencies need
    (libgomp1 for LightGBM, say)."""
    if not pyproject.is_file():
        return []
    try:
        tool = tomllib.loads(pyproject.read_text()).get("tool", {})
    except tomllib.TOMLDecodeError as exc:
        raise SailError(f"{pyproject.name} is not valid TOML: {exc}") from exc
    names = tool.get("sail", {}).get("system-packages", [])
    if not isinstance(names, list):
        names = [names]
    bad = [n for n in names if not isinstance(n, str) or not _DEBIAN_PACKAGE.match(n)]
    if bad:
        raise SailError(
            f"{pyproject.name}: [tool.sail] system-packages must be Debian package names, got {bad}"
        )
    return names


def inference_deps(runtime: str, explanations: bool) -> str:
    """The Dockerfile stage (INFERENCE_DEPS) an inference image starts from."""
    return EXPLAIN_DEPS if explanations else INFERENCE_DEPS[runtime]


def explain_requirements(core: dict[str, str], explanations: bool) -> dict[str, str]:
    """What explanations add to the core (the project's libraries go in through project-deps):
    nothing when serving.explanations is off, so the metric image stays as it was."""
    if not explanations:
        return {}
    hint = "install sail-pipelines[explain] (serving.explanations is on in params.yaml)"
    return {name: v for name, v in pinned(EXPLAIN_EXTRAS, hint).items() if name not in core}


def stage(context: BuildContext, explanations: bool = False) -> None:
    """Write what the Dockerfile copies from .sail/build/, touching files only when they change."""
    core = pinned(core_requirements())
    metric = pinned(METRIC_EXTRAS)
    pyproject = context.root / PYPROJECT
    hint = (
        f"pip install it (it is a dependency in {PYPROJECT}): the images pin what is installed here"
    )
    own = pinned(project_requirements(pyproject), hint)
    project = {name: version for name, version in own.items() if name not in core}
    serve = {
        **pinned(serve_requirements()),
        **{name: metadata.version(name) for name in NO_DEPS},
    }
    train = pinned(TRAIN_EXTRAS)
    for name, versions in (
        ("requirements-core.txt", core),
        ("requirements-metric.txt", metric),
        ("requirements-project.txt", project),
        ("requirements-serve.txt", serve),
        ("requirements-train.txt", train),
        ("requirements-explain.txt", explain_requirements(core, explanations)),
    ):
        update(context.staging / name, requirement_lines(versions))
    debian = "".join(f"{name}\n" for name in system_packages(pyproject))
    update(context.staging / "system-packages.txt", debian.encode())
    stage_wheel(context.staging)


def image_names(paths: ProjectPaths, params: Params, settings: Settings) -> ImageNames:
    """Tags from the commit of the code; `sail push` rewriting DVC pointers does not make it
    dirty."""
    commit, dirty = git_commit(paths.root, PIPELINE_OUTPUTS)
    return ImageNames(
        settings.registry, repository_name(params.gate.registered_model), code_tag(commit, dirty)
    )


def recorded(paths: ProjectPaths) -> dict[str, Any]:
    """The refs the last `sail build` produced, which the container steps run."""
    context = BuildContext.of(paths)
    if not context.record.is_file():
        raise SailError("no images built for this project: run `sail build` first")
    return read_json(context.record)


def run(
    paths: ProjectPaths,
    params: Params,
    settings: Settings,
    sides: tuple[str, ...] = ("train", "metric"),
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    if not (paths.root / DOCKERFILE).is_file():
        raise SailError(
            f"no {DOCKERFILE} in {paths.root}: this project was generated without container support"
        )
    client = containers.docker_client()
    context = BuildContext.of(paths)
    stage(context, params.serving.explanations)
    names = image_names(paths, params, settings)
    built = {"code": names.code, "registry": settings.registry, "base_image": settings.base_image}
    previous = read_json(context.record) if context.record.is_file() else {}
    for side in sides:
        ref = getattr(names, side)
        say(f"building {ref}")
        built[side] = containers.build_image(
            client,
            paths.root,
            DOCKERFILE,
            side,
            ref,
            settings.base_image,
            labels={"org.opencontainers.image.revision": names.code},
        )
    write_json(context.record, {**previous, **built})
    return {side: built[side] for side in sides}
