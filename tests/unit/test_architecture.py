"""The house rules the layout promises: a service imports only `services.common`, its own package and other
services' published clients (`services.<name>.client`); domain layers stay pure (no gRPC, no I/O clients).

`cli`, `devstack` and `simulator` are tools, not services: they may assemble any part.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SERVICES = Path(__file__).resolve().parents[2] / "services"
TOOLS = {"cli", "devstack", "simulator"}
SHARED = "common"
# What a domain module may not import: transports and storage clients belong in adapters and servers.
IMPURE = ("grpc", "pymongo", "redis", "tritonclient")


def imports(path: Path) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    return modules


def where(path: Path) -> str:
    return str(path.relative_to(SERVICES.parent))


def service_files() -> list[tuple[str, Path]]:
    """(service, file) for every module inside a service's package."""
    files = []
    for path in sorted(SERVICES.rglob("*.py")):
        parts = path.relative_to(SERVICES).parts
        if len(parts) > 1 and parts[0] not in TOOLS | {SHARED}:
            files.append((parts[0], path))
    return files


def test_services_import_only_common_themselves_and_published_clients() -> None:
    crossings = []
    for service, path in service_files():
        for module in imports(path):
            parts = module.split(".")
            if parts[0] != "services" or len(parts) < 2 or parts[1] in (SHARED, service):
                continue
            if parts[2:3] != ["client"]:
                crossings.append(f"{where(path)} imports {module}")
    assert not crossings, "\n".join(crossings)


def test_the_common_library_imports_no_service() -> None:
    found = [f"{where(path)} imports {module}" for path in sorted((SERVICES / SHARED).rglob("*.py"))
             for module in imports(path) if module.startswith("services.") and not module.startswith("services.common")]
    assert not found, "\n".join(found)


def test_domain_layers_stay_pure() -> None:
    found = [f"{where(path)} imports {module}" for path in sorted(SERVICES.glob("*/domain/**/*.py"))
             for module in imports(path) if module.split(".")[0] in IMPURE]
    assert not found, "\n".join(found)


def test_every_grpc_service_has_a_service_layer_its_server_only_translates() -> None:
    """server.py admits, translates protobuf and calls the use cases in service_layer/; it reaches no database
    and handles no storage error itself."""
    found = []
    for server in sorted(SERVICES.glob("*/server.py")):
        if not (server.parent / "service_layer" / "__init__.py").exists():
            found.append(f"{where(server)} has no service_layer/")
        found += [f"{where(server)} imports {module}" for module in imports(server)
                  if module.startswith(("pymongo.errors", "redis.exceptions"))]
    assert not found, "\n".join(found)


def test_refusals_are_one_exception_type() -> None:
    """Every refusal is services.common.rejected.Rejected; no module defines an exception carrying a status."""
    found = [f"{where(path)}: {node.name}" for path in sorted(SERVICES.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.ClassDef) and path.name != "rejected.py"
             and any(isinstance(b, ast.Name) and b.id == "Exception" for b in node.bases)
             and any(isinstance(n, ast.Attribute) and n.attr == "StatusCode" for n in ast.walk(node))]
    assert not found, "\n".join(found)


TESTS = SERVICES.parent / "tests"
# Each folder is a tier: the markers its modules carry, and the fixtures that start more than the tier may.
TIERS = {"unit": [{"unit"}], "integration": [{"integration"}], "e2e": [{"e2e"}],
         "security": [{"e2e", "security"}, {"integration", "security"}], "faults": [{"e2e", "faults"}]}
MARKERS = {"unit", "integration", "e2e", "security", "faults"}
SERVERS = {"stack", "mongo_uri", "mongo_db", "redis_url", "triton_url", "triton"}


def markers(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return {n.attr for n in ast.walk(node.value) if isinstance(n, ast.Attribute) and n.attr in MARKERS}
    return set()


def fixtures(tree: ast.Module) -> set[str]:
    return {arg.arg for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for arg in node.args.args}


def starts_a_service(name: str) -> bool:
    return name.endswith("_addr") or name in {"console_url", "portal_url", "tokens", "accounts"}


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_each_test_module_is_marked_for_its_tier_and_starts_no_more_than_it(tier: str) -> None:
    wrong: list[str] = []
    for path in sorted((TESTS / tier).glob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        used = fixtures(tree)
        if markers(tree) not in TIERS[tier]:
            wrong.append(f"{path.name}: marked {sorted(markers(tree))}, its folder says one of {TIERS[tier]}")
        if tier == "unit" and used & SERVERS:
            wrong.append(f"{path.name}: a unit test starts {sorted(used & SERVERS)}")
        if tier == "integration" and (services := sorted(filter(starts_a_service, used))):
            wrong.append(f"{path.name}: an integration test starts a service ({services})")
    assert not wrong, "\n".join(wrong)
