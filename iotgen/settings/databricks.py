"""Running on Databricks: detected from the runtime (never guessed), and the rules that apply there.

* :func:`on_databricks`: the runtime sets ``DATABRICKS_RUNTIME_VERSION`` in every notebook, job and Git folder;
  :func:`on_serverless`: serverless compute sets ``IS_SERVERLESS=TRUE`` and a ``client.<n>`` runtime version.
* :func:`check_location`: checkpoints and outputs must be Unity Catalog volumes (``/Volumes/...``) or cloud URIs
  there (not the DBFS root, the driver's local disk or the Git folder); anything else fails before any work,
  with one line naming the parameter.
* :func:`check_trigger`: serverless runs only ``availableNow`` and ``once`` triggers.
* :func:`dbutils` and :func:`service_credential`: the notebook's ``dbutils``, and a Unity Catalog service
  credential as an Azure SDK credential (``dbutils.credentials.getServiceCredentialsProvider``, DBR 16.2+).

This module imports nothing else of iotgen's: every layer may ask it where it runs.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..base.errors import InputError

#: Where Unity Catalog volumes are mounted on a Databricks driver.
VOLUMES_ROOT = "/Volumes"
_URI = re.compile(r"^(abfss?|wasbs?|s3a?|gs|r2|dbfs):/", re.IGNORECASE)


def on_databricks() -> bool:
    """True inside a Databricks runtime (notebook, job or Git folder), serverless included."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def runtime_version() -> str:
    """``DATABRICKS_RUNTIME_VERSION`` (``17.3``; ``client.4.5`` on serverless); empty off Databricks."""
    return os.environ.get("DATABRICKS_RUNTIME_VERSION", "")


def on_serverless() -> bool:
    """True on serverless compute (notebooks and jobs): Spark Connect, ``availableNow``/``once`` triggers only."""
    return on_databricks() and (os.environ.get("IS_SERVERLESS", "").upper() == "TRUE"
                                or runtime_version().startswith("client."))


def is_volume_or_uri(location: str) -> bool:
    """True for ``/Volumes/<catalog>/<schema>/<volume>/...`` (or ``dbfs:/Volumes/...``) and cloud storage URIs."""
    text = str(location).strip()
    if text.lower().startswith("dbfs:/volumes/"):
        return True
    if _URI.match(text):
        return not text.lower().startswith("dbfs:")
    root = VOLUMES_ROOT.rstrip("/") + "/"
    return text.startswith(root) and len([p for p in text[len(root):].split("/") if p]) >= 3


def check_location(parameter: str, location: str, what: str = "outputs") -> None:
    """On Databricks, ``ValueError`` (one line naming ``parameter``) unless ``location`` is a volume or a cloud
    URI; elsewhere nothing to check."""
    if on_databricks() and not is_volume_or_uri(location):
        raise InputError(f"{parameter} must be a Unity Catalog volume ({VOLUMES_ROOT}/<catalog>/<schema>/<volume>/...) "
                         f"or a cloud URI (abfss://...) for {what} on Databricks, got {str(location)!r}")


def check_trigger(parameter: str, trigger: dict[str, Any]) -> None:
    """On serverless, ``ValueError`` naming ``parameter`` for a processing-time (interval) trigger."""
    if on_serverless() and "processingTime" in trigger:
        raise InputError(f"{parameter}: serverless compute runs only availableNow and once triggers, got the "
                         f"interval {trigger['processingTime']!r} (use a classic cluster for a continuous stream)")


def dbutils() -> Any:
    """The notebook's ``dbutils`` when running there, else None."""
    try:
        import IPython
    except ImportError:
        return None
    shell = IPython.get_ipython()
    return None if shell is None else shell.user_ns.get("dbutils")


def service_credential(name: str) -> Any:
    """An Azure SDK credential for the Unity Catalog service credential ``name`` (Databricks Runtime 16.2+).
    ``ValueError`` naming EVENTHUB_SERVICE_CREDENTIAL off Databricks or without ``dbutils.credentials``."""
    utils = dbutils() if on_databricks() else None
    provider = getattr(getattr(utils, "credentials", None), "getServiceCredentialsProvider", None)
    if provider is None:
        raise InputError("EVENTHUB_SERVICE_CREDENTIAL needs Databricks Runtime 16.2+ (dbutils.credentials."
                         "getServiceCredentialsProvider); elsewhere use a connection string or Azure AD "
                         "(EVENTHUB_NAMESPACE)")
    return provider(name)
