"""A local Azure Event Hubs emulator: a small pure-Python AMQP 1.0 server.

The unmodified ``azure-eventhub`` SDK (sync and async clients) can send to it and
receive from it with a connection string ending in ``UseDevelopmentEmulator=true``.

In-process::

    async with EventHubsEmulator(hubs=["iot-events"], partitions=4, port=0) as emulator:
        conn_str = emulator.connection_string("iot-events")

In a subprocess (what tests, notebooks and the demo use)::

    with start_emulator_process(hub="iot-events", partitions=4) as emulator:
        producer = EventHubProducerClient.from_connection_string(emulator.connection_string)

See ``docs/emulator.md`` for what is and is not emulated.
"""

from .process import EmulatorProcess, start_emulator_process
from .server import DEFAULT_KEY, DEFAULT_KEY_NAME, DEFAULT_MAX_MESSAGE_SIZE, EventHubsEmulator, connection_string

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_KEY_NAME",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "EmulatorProcess",
    "EventHubsEmulator",
    "connection_string",
    "start_emulator_process",
]
