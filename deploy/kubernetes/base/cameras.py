#!/usr/bin/env python3
"""Write cameras.yaml: one Deployment per camera listed in cameras.env.

    python3 deploy/kubernetes/base/cameras.py      # after editing cameras.env

cameras.env is the ConfigMap `cameras` (kustomization.yaml): ``NAME.stream`` and
``NAME.source`` per camera. Each camera's Deployment reads its stream name and source from
that ConfigMap, so changing a source is an edit of cameras.env and an apply; adding or
removing a camera is an edit, this script, and an apply. A camera is one producer process:
one replica, never more (two would publish one stream twice).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")

TEMPLATE = """\
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: camera-{name}
spec:
  replicas: 1
  strategy: {{ type: Recreate }} # never two producers of one stream
  selector:
    matchLabels: {{ app.kubernetes.io/name: camera, framebroker/camera: {name} }}
  template:
    metadata:
      labels: {{ app.kubernetes.io/name: camera, framebroker/camera: {name} }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "9100"
    spec:
      securityContext: {{ runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true }}
      containers:
        - name: producer
          image: framebroker
          args: ["produce"]
          env:
            - name: FRAMEBROKER_STREAM
              valueFrom: {{ configMapKeyRef: {{ name: cameras, key: {name}.stream }} }}
            - name: FRAMEBROKER_SOURCE
              valueFrom: {{ configMapKeyRef: {{ name: cameras, key: {name}.source }} }}
            - {{ name: FRAMEBROKER_BROKER, value: broker }}
            - {{ name: FRAMEBROKER_CURVE_KEY, value: /keys/own/camera.key_secret }}
            - {{ name: FRAMEBROKER_CURVE_BROKER_KEY, value: /keys/servers/broker.key }}
          ports:
            - {{ name: metrics, containerPort: 9100 }}
          readinessProbe: # the image's health check: the broker lists the stream as live
            exec: {{ command: ["framebroker-healthcheck", "produce"] }}
            periodSeconds: 5
            timeoutSeconds: 5
          livenessProbe:
            httpGet: {{ path: /metrics, port: metrics }}
            periodSeconds: 10
          resources:
            requests: {{ cpu: 250m, memory: 128Mi }}
            limits: {{ memory: 1Gi }}
          volumeMounts:
            - {{ name: own-key, mountPath: /keys/own, readOnly: true }}
            - {{ name: server-keys, mountPath: /keys/servers, readOnly: true }}
            - {{ name: shm, mountPath: /dev/shm }}
      volumes:
        - name: own-key
          secret: {{ secretName: curve-camera }}
        - name: server-keys
          secret: {{ secretName: curve-servers }}
        - name: shm
          emptyDir: {{ medium: Memory, sizeLimit: 256Mi }}
"""


def camera_names(env_text: str) -> list[str]:
    """The cameras of cameras.env, in order; ValueError for a malformed list."""
    keys: dict[str, set[str]] = {}
    for number, line in enumerate(env_text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        name, dot, field = key.partition(".")
        if not sep or not dot or field not in ("stream", "source") or not value:
            raise ValueError(f"cameras.env line {number}: want NAME.stream= or NAME.source=")
        if not _NAME.match(name):
            raise ValueError(f"cameras.env line {number}: {name!r} is not a DNS label")
        keys.setdefault(name, set()).add(field)
    for name, fields in keys.items():
        if fields != {"stream", "source"}:
            raise ValueError(f"camera {name!r} needs both {name}.stream and {name}.source")
    return list(keys)


def render(env_text: str) -> str:
    header = "# Written by cameras.py from cameras.env; do not edit by hand.\n"
    return header + "".join(TEMPLATE.format(name=name) for name in camera_names(env_text))


def main() -> int:
    text = render((HERE / "cameras.env").read_text())
    (HERE / "cameras.yaml").write_text(text)
    print(f"wrote {HERE / 'cameras.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
