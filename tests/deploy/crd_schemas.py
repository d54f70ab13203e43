"""JSON Schemas of the custom resources the manifests use, written for this project from the fields the
projects document (KEDA 2.15 ScaledObject/TriggerAuthentication and Kafka scaler reference; Prometheus
Operator v1 ServiceMonitor and PrometheusRule API reference). No third-party schema file is copied.

They are deliberately closed (``additionalProperties: false``) where the docs list every field, so a typo
such as ``maxReplicas`` for ``maxReplicaCount`` or a boolean where KEDA expects the string ``"false"``
(trigger metadata is a map of strings) fails offline instead of being dropped by the API server.
Fields a newer release adds are added here when the manifests start using them.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# The Prometheus Operator's Duration format, e.g. 30s, 5m, 1h30m.
_DURATION: Schema = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": _STRING_MAP,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_ANY_OBJECT: Schema = {"type": "object"}


def _resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {
                        "type": "string",
                        "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                        "maxLength": 253,
                    },
                    "namespace": {"type": "string"},
                    "labels": _STRING_MAP,
                    "annotations": _STRING_MAP,
                },
            },
            "spec": spec,
        },
    }


# KEDA Kafka scaler trigger metadata (docs: scalers/apache-kafka). Every value is a string.
_KAFKA_METADATA: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["bootstrapServers", "consumerGroup"],
    "properties": {
        "bootstrapServers": {"type": "string", "minLength": 1},
        "consumerGroup": {"type": "string", "minLength": 1},
        "topic": {"type": "string"},
        "lagThreshold": {"type": "string", "pattern": r"^[0-9]+$"},
        "activationLagThreshold": {"type": "string", "pattern": r"^[0-9]+$"},
        "offsetResetPolicy": {"enum": ["latest", "earliest"]},
        "allowIdleConsumers": {"enum": ["true", "false"]},
        "scaleToZeroOnInvalidOffset": {"enum": ["true", "false"]},
        "excludePersistentLag": {"enum": ["true", "false"]},
        "limitToPartitionsWithLag": {"enum": ["true", "false"]},
        "version": {"type": "string"},
        "partitionLimitation": {"type": "string"},
        "sasl": {"enum": ["plaintext", "scram_sha256", "scram_sha512", "gssapi", "oauthbearer", "none"]},
        "saslTokenProvider": {"enum": ["bearer", "aws_msk_iam"]},
        "tls": {"enum": ["enable", "disable"]},
        "unsafeSsl": {"enum": ["true", "false"]},
        "awsRegion": {"type": "string"},
    },
}

SCALED_OBJECT = _resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["scaleTargetRef", "triggers"],
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": {"type": "string"},
                    "envSourceContainerName": {"type": "string"},
                },
            },
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "initialCooldownPeriod": {"type": "integer", "minimum": 0},
            "idleReplicaCount": {"type": "integer", "minimum": 0},
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "fallback": {
                "type": "object",
                "additionalProperties": False,
                "required": ["failureThreshold", "replicas"],
                "properties": {
                    "failureThreshold": {"type": "integer", "minimum": 0},
                    "replicas": {"type": "integer", "minimum": 0},
                },
            },
            "advanced": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "horizontalPodAutoscalerConfig": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"name": {"type": "string"}, "behavior": _ANY_OBJECT},
                    },
                    "scalingModifiers": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["target", "formula"],
                        "properties": {
                            "target": {"type": "string"},
                            "activationTarget": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value"]},
                            "formula": {"type": "string"},
                        },
                    },
                },
            },
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type", "metadata"],
                    "properties": {
                        "type": {"type": "string"},
                        "name": {"type": "string"},
                        "metadata": _STRING_MAP,
                        "useCachedMetrics": {"type": "boolean"},
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        "authenticationRef": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                            },
                        },
                    },
                    "if": {"properties": {"type": {"const": "kafka"}}},
                    "then": {"properties": {"metadata": _KAFKA_METADATA}},
                },
            },
        },
    },
)

_TARGET_REF: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["parameter", "name", "key"],
        "properties": {
            "parameter": {"type": "string"},
            "name": {"type": "string"},
            "key": {"type": "string"},
        },
    },
}

TRIGGER_AUTHENTICATION = _resource(
    "keda.sh/v1alpha1",
    "TriggerAuthentication",
    {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "secretTargetRef": _TARGET_REF,
            "env": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["parameter", "name"],
                    "properties": {
                        "parameter": {"type": "string"},
                        "name": {"type": "string"},
                        "containerName": {"type": "string"},
                    },
                },
            },
            "podIdentity": _ANY_OBJECT,
            "hashiCorpVault": _ANY_OBJECT,
            "azureKeyVault": _ANY_OBJECT,
            "gcpSecretManager": _ANY_OBJECT,
            "awsSecretManager": _ANY_OBJECT,
        },
    },
)

_ENDPOINT: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "targetPort": {"type": ["string", "integer"]},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https"]},
        "params": {"type": "object"},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "tlsConfig": _ANY_OBJECT,
        "bearerTokenFile": {"type": "string"},
        "bearerTokenSecret": _ANY_OBJECT,
        "authorization": _ANY_OBJECT,
        "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"},
        "trackTimestampsStaleness": {"type": "boolean"},
        "basicAuth": _ANY_OBJECT,
        "oauth2": _ANY_OBJECT,
        "metricRelabelings": {"type": "array"},
        "relabelings": {"type": "array"},
        "proxyUrl": {"type": "string"},
        "followRedirects": {"type": "boolean"},
        "enableHttp2": {"type": "boolean"},
        "filterRunning": {"type": "boolean"},
    },
    "oneOf": [{"required": ["port"]}, {"required": ["targetPort"]}],
}

SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["selector", "endpoints"],
        "properties": {
            "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": {"type": "string"}},
                },
            },
            "sampleLimit": {"type": "integer", "minimum": 0},
            "targetLimit": {"type": "integer", "minimum": 0},
            "labelLimit": {"type": "integer", "minimum": 0},
            "labelNameLengthLimit": {"type": "integer", "minimum": 0},
            "labelValueLengthLimit": {"type": "integer", "minimum": 0},
            "keepDroppedTargets": {"type": "integer", "minimum": 0},
            "attachMetadata": _ANY_OBJECT,
            "scrapeClass": {"type": "string"},
            "scrapeProtocols": {"type": "array", "items": {"type": "string"}},
        },
    },
)

_RULE: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expr"],
    "properties": {
        "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "alert": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*$"},
        "expr": {"type": ["string", "integer"], "minLength": 1},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
}

PROMETHEUS_RULE = _resource(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["groups"],
        "properties": {
            "groups": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": _DURATION,
                        "query_offset": _DURATION,
                        "limit": {"type": "integer", "minimum": 0},
                        "partial_response_strategy": {"type": "string"},
                        "labels": _STRING_MAP,
                        "rules": {"type": "array", "minItems": 1, "items": _RULE},
                    },
                },
            }
        },
    },
)

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
}
# API groups whose objects are validated here instead of against the Kubernetes schema.
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
