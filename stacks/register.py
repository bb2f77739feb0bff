"""Register (and optionally activate) a ZenML stack described by one of our stack files.

    python -m stacks.register stacks/k8s-gpu.yaml [--activate]

A stack file names the stack and, per component type, a component name, flavor and
configuration, and optionally ``secrets:`` (ZenML secrets created when missing, for
``{{secret.key}}`` references in configurations) and ``flavors:`` (custom flavors
registered first: ``{type: alerter, source: module.FlavorClass}``); ``${VAR}`` /
``${VAR:-default}`` are read from the environment. Registration
is idempotent: components and a stack that already exist under the same names are kept (use
``--replace`` to delete and re-create the stack's components from the file).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from rxvision.config import read_yaml
from rxvision.errors import RxVisionError

logger = logging.getLogger(__name__)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any) -> Any:
    """Replace ${VAR} and ${VAR:-default} in strings, recursively."""
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise RxVisionError(
                f"stack file needs the environment variable {name}",
                f"export {name}=... (or give a default as ${{{name}:-value}})",
            )
        return default

    return _VAR.sub(sub, value)


def read_stack_file(path: Path) -> dict[str, Any]:
    """Parse and check a stack file; environment variables are expanded."""
    path = Path(path)
    spec = read_yaml(path, kind="stack file", missing_hint="see stacks/*.yaml for examples")
    if "name" not in spec or not isinstance(spec.get("components"), dict):
        raise RxVisionError(f"stack file {path} needs `name:` and a `components:` mapping")
    from zenml.enums import StackComponentType

    known = {t.value for t in StackComponentType}
    for ctype, comp in spec["components"].items():
        if ctype not in known:
            raise RxVisionError(
                f"stack file {path}: unknown component type '{ctype}'",
                f"use one of: {', '.join(sorted(known))}",
            )
        if not isinstance(comp, dict) or "flavor" not in comp or "name" not in comp:
            raise RxVisionError(
                f"stack file {path}: component '{ctype}' needs `name:` and `flavor:`"
            )
    for flavor in spec.get("flavors") or []:
        if (
            not isinstance(flavor, dict)
            or flavor.get("type") not in known
            or "source" not in flavor
        ):
            raise RxVisionError(
                f"stack file {path}: each of `flavors:` needs `type:` (a component "
                "type) and `source:` (module.FlavorClass)"
            )
    return _expand(spec)


def register_stack(path: Path, activate: bool = False, replace: bool = False) -> str:
    """Create the file's components and stack (idempotent); return the stack name."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    spec = read_stack_file(path)
    client = Client()
    name = spec["name"]
    exists = _stack_exists(client, name)
    if exists and replace:
        client.delete_stack(name, recursive=True)
        exists = False
    for secret_name, values in (spec.get("secrets") or {}).items():
        _ensure_secret(client, secret_name, values)
    for flavor in spec.get("flavors") or []:
        _ensure_flavor(client, flavor)
    if not exists:
        components: dict[StackComponentType, str] = {}
        for type_name, comp in spec["components"].items():
            ctype = StackComponentType(type_name)
            try:
                client.get_stack_component(ctype, comp["name"], allow_name_prefix_match=False)
            except KeyError:
                try:
                    client.create_stack_component(
                        name=comp["name"],
                        flavor=comp["flavor"],
                        component_type=ctype,
                        configuration=comp.get("configuration") or {},
                    )
                except (KeyError, ValueError) as exc:
                    raise RxVisionError(
                        f"cannot register {type_name} '{comp['name']}' "
                        f"(flavor {comp['flavor']}): {exc}",
                        "check the flavor name and its configuration keys (`zenml "
                        f"{type_name.replace('_', '-')} flavor describe {comp['flavor']}`)",
                    ) from None
            components[ctype] = comp["name"]
        client.create_stack(name=name, components=components)
        logger.info("registered ZenML stack %s from %s", name, path)
    if activate:
        client.activate_stack(name)
    return name


def _ensure_flavor(client: Any, flavor: dict[str, Any]) -> None:
    """Register a custom flavor (``{type: alerter, source: module.Class}``) unless known."""
    from zenml.enums import StackComponentType

    ctype = StackComponentType(flavor["type"])
    from zenml.utils import source_utils

    name = source_utils.load(flavor["source"])().name
    try:
        client.get_flavor_by_name_and_type(name=name, component_type=ctype)
    except KeyError:
        client.create_flavor(source=flavor["source"], component_type=ctype)
        logger.info("registered ZenML %s flavor %s", ctype.value, name)


def _ensure_secret(client: Any, name: str, values: dict[str, Any]) -> None:
    """Create a ZenML secret the stack's components reference, unless it exists."""
    try:
        client.get_secret(name, allow_partial_name_match=False)
    except KeyError:
        client.create_secret(name, values={k: str(v) for k, v in values.items()})
        logger.info("created ZenML secret %s (keys: %s)", name, ", ".join(values))


def _stack_exists(client: Any, name: str) -> bool:
    try:
        client.get_stack(name, allow_name_prefix_match=False)
        return True
    except KeyError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stacks.register", description=__doc__.split("\n")[0]
    )
    parser.add_argument("stack_file", type=Path)
    parser.add_argument("--activate", action="store_true", help="make it the active stack")
    parser.add_argument(
        "--replace", action="store_true", help="delete and re-create it from the file"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from stacks.setup import configure_environment

    configure_environment()
    try:
        name = register_stack(args.stack_file, activate=args.activate, replace=args.replace)
    except RxVisionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"stack {name} is registered" + (" and active" if args.activate else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
