"""The gRPC ResourceProvider service the engine talks to, and the plugin's main.

The engine starts the plugin with its own address as the argument, reads the port from the
first line of stdout, then calls GetPluginInfo, CheckConfig/Configure, and Check, Diff,
Create, Read, Update, Delete per resource; Cancel when the user interrupts. Calls the double
does not serve (Handshake, GetSchema, Invoke, ...) answer UNIMPLEMENTED, which the engine
handles as it does for older providers.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf import empty_pb2, json_format

from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

from .compute_types import Firewall, Instance, ResourcePolicy
from .config import ConfigError, ProviderConfig, read_config
from .container_types import Cluster, NodePool
from .errors import ProviderError, abort, to_struct
from .iam_types import Account, IAMMember
from .mig_types import InstanceTemplate, RegionInstanceGroupManager
from .router_types import Router, RouterNat
from .storage_types import BucketIAMMember

TYPES = {t.token: t for t in (Instance(), Firewall(), ResourcePolicy(), Router(), RouterNat(),
                              Cluster(), NodePool(), Account(), IAMMember(),
                              BucketIAMMember(), InstanceTemplate(), RegionInstanceGroupManager())}


def plugin_version() -> str:
    """The version pulumi-gcp's SDK asks the engine for (its pulumi-plugin.json)."""
    import importlib.util

    spec = importlib.util.find_spec("pulumi_gcp")  # located, not imported: that takes seconds
    meta = json.loads((Path(spec.origin).parent / "pulumi-plugin.json").read_text())
    return meta["version"]


def as_dict(struct) -> dict:
    return json_format.MessageToDict(struct) if struct is not None else {}


def changed_paths(olds: dict, news: dict) -> list[str]:
    """Top-level input names whose values differ, plus dotted paths one level into objects
    (so 'scheduling.provisioningModel' can force a replacement while 'scheduling.x' does not)."""
    paths = []
    for key in sorted(set(olds) | set(news)):
        if key.startswith("__") or olds.get(key) == news.get(key):
            continue
        paths.append(key)
        old, new = olds.get(key), news.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            paths += [f"{key}.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return paths


class GcpProviderDouble(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(self) -> None:
        self.config = ProviderConfig()

    def _type(self, token: str, context):
        handler = TYPES.get(token)
        if handler is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          f"the gcp provider double does not implement {token}; add it to tests/gcp_provider")
        return handler

    # -- plugin and configuration -------------------------------------------------------
    def GetPluginInfo(self, request, context):
        return plugin_pb2.PluginInfo(version=plugin_version())

    def CheckConfig(self, request, context):
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request, context):
        changes = changed_paths(as_dict(request.olds), as_dict(request.news))
        kind = provider_pb2.DiffResponse.DIFF_SOME if changes else provider_pb2.DiffResponse.DIFF_NONE
        return provider_pb2.DiffResponse(changes=kind, diffs=changes)

    def Configure(self, request, context):
        self.config = ProviderConfig(read_config(dict(request.variables), as_dict(request.args)))
        # Plain values only: no secrets, resource references or output values in the requests.
        return provider_pb2.ConfigureResponse(acceptSecrets=False, supportsPreview=True,
                                              acceptResources=False, acceptOutputs=False)

    # -- resources ------------------------------------------------------------------------
    def Check(self, request, context):
        handler = self._type(_token(request), context)
        news = as_dict(request.news)
        failures = [provider_pb2.CheckFailure(property=key, reason="Missing required argument")
                    for key in getattr(handler, "required", ("name",)) if not news.get(key)]
        return provider_pb2.CheckResponse(inputs=to_struct(news), failures=failures)

    def Diff(self, request, context):
        handler = self._type(_token(request), context)
        olds = as_dict(request.old_inputs) or as_dict(request.olds)
        changes = changed_paths(olds, as_dict(request.news))
        replaces = [p for p in changes if p in handler.replace_on]
        kind = provider_pb2.DiffResponse.DIFF_SOME if changes else provider_pb2.DiffResponse.DIFF_NONE
        # GCE names are unique: a replacement must delete the old resource before creating.
        return provider_pb2.DiffResponse(changes=kind, diffs=[p for p in changes if "." not in p],
                                         replaces=sorted({p.split(".")[0] for p in replaces}),
                                         deleteBeforeReplace=bool(replaces))

    def Create(self, request, context):
        handler = self._type(_token(request), context)
        inputs = as_dict(request.properties)
        if request.preview:
            return provider_pb2.CreateResponse(properties=request.properties)
        try:
            resource_id, outputs = handler.create(self.config, inputs)
        except (ProviderError, ConfigError) as exc:
            abort(context, _as_provider_error(exc), inputs)
        return provider_pb2.CreateResponse(id=resource_id, properties=to_struct(outputs))

    def Read(self, request, context):
        handler = self._type(_token(request), context)
        state = as_dict(request.properties)
        try:
            found = handler.read(self.config, request.id, state)
        except (ProviderError, ConfigError) as exc:
            abort(context, _as_provider_error(exc), None)
        if found is None:  # gone: an empty id tells the engine to drop it from the state
            return provider_pb2.ReadResponse()
        return provider_pb2.ReadResponse(id=request.id, properties=to_struct(found),
                                         inputs=request.inputs)

    def Update(self, request, context):
        handler = self._type(_token(request), context)
        olds, news = as_dict(request.olds), as_dict(request.news)
        if request.preview:
            return provider_pb2.UpdateResponse(properties=to_struct({**olds, **news}))
        try:
            outputs = handler.update(self.config, request.id, olds, news)
        except (ProviderError, ConfigError) as exc:
            abort(context, _as_provider_error(exc), news)
        return provider_pb2.UpdateResponse(properties=to_struct(outputs))

    def Delete(self, request, context):
        from google.api_core import exceptions

        handler = self._type(_token(request), context)
        try:
            handler.delete(self.config, request.id, as_dict(request.properties))
        except exceptions.NotFound:
            pass  # already gone: the provider treats a 404 on delete as deleted
        except ProviderError as exc:
            if "Error 404" not in str(exc):
                abort(context, exc, None)
        except ConfigError as exc:
            abort(context, ProviderError(str(exc)), None)
        return empty_pb2.Empty()

    def Cancel(self, request, context):
        # Operations in flight finish (GCE cannot take back an accepted insert); the engine
        # records them and stops scheduling new ones.
        return empty_pb2.Empty()


def _token(request) -> str:
    return request.type or request.urn.rsplit("::", 2)[-2]


def _as_provider_error(exc: Exception) -> ProviderError:
    return exc if isinstance(exc, ProviderError) else ProviderError(str(exc))


def _exit_with_parent(parent: int) -> None:
    """A plugin outlives nothing: when the engine is gone (even by kill -9), so is the double."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(GcpProviderDouble(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    server.wait_for_termination()
