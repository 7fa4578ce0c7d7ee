"""The import rules that keep the layers one-way, checked on the source (function-local imports included).

serve_app is the base replicas import; only the builder (serve_app/app.py) imports `deployments`. Replicas may
import only the kernel: the config schema, typed errors, the gateway-replica contract and the wire models,
which themselves import nothing but the standard library and pydantic. The gateway never imports an engine.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.models import REPO

KERNEL = ("serve_app.config", "serve_app.errors", "serve_app.contract", "serve_app.protocol")
ENGINE_LIBRARIES = ("torch", "transformers", "vllm", "faster_whisper", "av", "ctranslate2")
BUILDER = "serve_app.app"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (functions and methods too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def sources(package: str) -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted((REPO / package).rglob("*.py"))}


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_kernel(name: str) -> bool:
    return within(name, KERNEL)


def test_only_the_builder_imports_deployments():
    offenders = {m: sorted(i for i in found if within(i, "deployments"))
                 for m, found in sources("serve_app").items() if m != BUILDER}
    assert not {m: i for m, i in offenders.items() if i}


def test_the_kernel_imports_only_the_standard_library_pydantic_and_itself():
    allowed = set(sys.stdlib_module_names) | {"pydantic", "pydantic_core"}  # pydantic_core is pydantic's own
    offenders = {}
    for module, found in sources("serve_app").items():
        if not is_kernel(module):
            continue
        bad = sorted(i for i in found if not is_kernel(i) and i.split(".")[0] not in allowed)
        if bad:
            offenders[module] = bad
    assert not offenders


def test_serve_app_never_imports_an_engine_library():
    offenders = {m: sorted(i for i in found if within(i, ENGINE_LIBRARIES))
                 for m, found in sources("serve_app").items()}
    assert not {m: i for m, i in offenders.items() if i}


def test_replicas_import_only_the_kernel_of_serve_app():
    offenders = {m: sorted(i for i in found if within(i, "serve_app") and not is_kernel(i))
                 for m, found in sources("deployments").items()}
    assert not {m: i for m, i in offenders.items() if i}


@pytest.mark.parametrize("module", ["serve_app.gateway.ingress", BUILDER])
def test_the_gateway_and_builder_load_no_engine_at_run_time(module):
    """What actually lands in sys.modules, transitive imports included."""
    code = (f"import sys, {module}; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {ENGINE_LIBRARIES!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_rules_can_fail(tmp_path):
    """The checker sees function-local imports and `from pkg import module` forms."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from deployments import text\n    import torch.nn\n")
    found = imports(probe)
    assert "deployments.text" in found and "torch.nn" in found
