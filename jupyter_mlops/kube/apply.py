"""Putting manifests on a cluster through the official client: create each object, or update it in place when
it exists (what `kubectl apply` does for objects only we manage). HTTPRoute, a Gateway API CRD, goes through the
custom-objects API."""
from __future__ import annotations

import re

from ..errors import MlopsError

_CUSTOM = {"HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes")}
_TYPED = {"v1": "CoreV1Api", "apps/v1": "AppsV1Api", "batch/v1": "BatchV1Api"}


def _snake(kind: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


def apply(api_client, objects: list[dict]) -> list[str]:
    """Create or update each object; returns "created Kind/name" / "updated Kind/name" lines."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from ..engines.kubernetes import explain

    done = []
    for obj in objects:
        kind, name, namespace = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
        if kind in _CUSTOM:
            group, version, plural = _CUSTOM[kind]
            api = client.CustomObjectsApi(api_client)
            create = lambda: api.create_namespaced_custom_object(group, version, namespace, plural, obj)  # noqa: E731
            update = lambda: api.patch_namespaced_custom_object(group, version, namespace, plural, name, obj)  # noqa: E731
            what = plural
        elif obj["apiVersion"] in _TYPED:
            api = getattr(client, _TYPED[obj["apiVersion"]])(api_client)
            snake = _snake(kind)
            create = lambda: getattr(api, f"create_namespaced_{snake}")(namespace, obj)  # noqa: E731
            update = lambda: getattr(api, f"patch_namespaced_{snake}")(name, namespace, obj)  # noqa: E731
            what = f"{snake.replace('_', '')}s"
        else:
            raise MlopsError(f"cannot apply {obj['apiVersion']} {kind} (not one this tool writes)")
        try:
            create()
            done.append(f"created {kind}/{name}")
        except ApiException as exc:
            if exc.status != 409:  # 409: it exists; update it
                raise explain(exc, "create", what, namespace) from None
            try:
                update()
            except Exception as again:
                raise explain(again, "patch", what, namespace) from None
            done.append(f"updated {kind}/{name}")
        except Exception as exc:
            raise explain(exc, "create", what, namespace) from None
    return done
