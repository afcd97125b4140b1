"""Putting manifests on a cluster through the official client: create each object, or update it in place when
it exists (what `kubectl apply` does for objects only we manage). HTTPRoute, a Gateway API CRD, goes through the
custom-objects API."""
from __future__ import annotations

import json
import os
import re

from ..errors import MlopsError

_CUSTOM = {"HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes")}
_TYPED = {"v1": "CoreV1Api", "apps/v1": "AppsV1Api", "batch/v1": "BatchV1Api",
          "rbac.authorization.k8s.io/v1": "RbacAuthorizationV1Api"}


def load_client(context: str | None = None):
    """The official client configured from the kubeconfig (KUBECONFIG or ~/.kube/config), or in-cluster."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        # KUBECONFIG read now: the client reads it once, at import, and would miss a change since
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, context=context)
    except (ConfigException, FileNotFoundError, TypeError) as exc:
        try:
            config.load_incluster_config()
        except ConfigException:
            raise MlopsError(f"no Kubernetes configuration: {exc}. Point KUBECONFIG at a kubeconfig file (or put "
                             "one in ~/.kube/config), or run inside a cluster with a service account") from None
    return client.ApiClient()


def _snake(kind: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


def explain(exc: Exception, verb: str, what: str, namespace: str) -> MlopsError:
    """An API failure as the user's problem: unreachable cluster, RBAC, a missing namespace, ..."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        if exc.status == 403:
            return MlopsError(f"forbidden by RBAC: you may not {verb} {what} in namespace `{namespace}` "
                              f"(check with `kubectl auth can-i {verb} {what} -n {namespace}`); the cluster said: "
                              f"{_message(exc)}")
        if exc.status == 401:
            return MlopsError(f"the cluster did not accept your credentials ({_message(exc)}); refresh the "
                              "kubeconfig's token or certificate")
        if exc.status == 404:
            return MlopsError(f"not found while trying to {verb} {what} in namespace `{namespace}`: "
                              f"{_message(exc)} (does the namespace exist?)")
        return MlopsError(f"the cluster refused to {verb} {what} (HTTP {exc.status}): {_message(exc)}")
    if isinstance(exc, (HTTPError, OSError)):
        return MlopsError(f"the Kubernetes API server is unreachable ({exc}); check the cluster and the kubeconfig's "
                          "server address")
    return MlopsError(f"could not {verb} {what}: {exc}")


def _message(exc) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def apply(api_client, objects: list[dict]) -> list[str]:
    """Create or update each object; returns "created Kind/name" / "updated Kind/name" lines."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

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


def delete(api_client, namespace: str, objects: list[tuple[str, str, str]]) -> list[str]:
    """Delete each (apiVersion, kind, name) in `namespace`, foreground; one that is not there is skipped. Returns
    "deleted Kind/name" lines."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    done = []
    for api_version, kind, name in objects:
        if kind in _CUSTOM:
            group, version, plural = _CUSTOM[kind]
            api = client.CustomObjectsApi(api_client)
            call = lambda: api.delete_namespaced_custom_object(group, version, namespace, plural, name)  # noqa: E731
            what = plural
        else:
            api = getattr(client, _TYPED[api_version])(api_client)
            snake = _snake(kind)
            call = lambda: getattr(api, f"delete_namespaced_{snake}")(  # noqa: E731
                name, namespace, propagation_policy="Foreground")
            what = f"{snake.replace('_', '')}s"
        try:
            call()
            done.append(f"deleted {kind}/{name}")
        except ApiException as exc:
            if exc.status != 404:
                raise explain(exc, "delete", what, namespace) from None
        except Exception as exc:
            raise explain(exc, "delete", what, namespace) from None
    return done
