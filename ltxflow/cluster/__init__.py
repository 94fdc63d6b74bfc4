"""Rendering on a Ray cluster: which cluster a build uses (this module, no Ray import), the driver's
dispatch over actors (pool.py) and what runs inside an actor (actor.py). `import ray` happens in
pool.py and actor.py only, when a build or `plan` is given a Ray address."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

ENV_ADDRESS = "LTXFLOW_RAY_ADDRESS"


@dataclass(frozen=True)
class RaySettings:
    """Where chunks render: `address` as ray.init takes it ("local": a private cluster started for
    the build and stopped after it; "auto": the cluster running on this machine; "ray://host:10001":
    Ray Client; "host:6379": a cluster's head). `shared`: a folder every node and the driver
    mount (clips are written there instead of returned through the object store; None: object
    store). `actors`: how many actors (None: one per GPU for backend local, one per
    `cpus_per_actor` CPUs for the others)."""

    address: str
    shared: Path | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0


def ray_settings(address: str | None, shared: Path | None, project: Any, project_dir: Path,
                 env: Mapping[str, str] | None = None) -> RaySettings | None:
    """The build's cluster: --ray, else LTXFLOW_RAY_ADDRESS, else the project's `ray.address`;
    None (render on this machine, Ray never imported) when none is given. `project`: the project's
    `ray:` section (project.model.RayOptions)."""
    env = os.environ if env is None else env
    address = address or env.get(ENV_ADDRESS) or (project.address if project is not None else None)
    if not address:
        return None
    if shared is None and project is not None and project.shared:
        shared = project_dir / Path(project.shared).expanduser()
    return RaySettings(address, shared.resolve() if shared is not None else None,
                       project.actors if project is not None else None,
                       project.cpus_per_actor if project is not None else 1.0)
