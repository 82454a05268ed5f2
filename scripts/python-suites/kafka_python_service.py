"""Glue for kafka-python's integration tests against an already running broker (weir).

The kafka-python sdist ships test/integration/fixtures.py, which imports test.service, but not
test/service.py itself. With KAFKA_URI set the fixtures only wrap the external broker in an
ExternalService; spawning a broker (SpawnedService) is not what this run does.
"""


class ExternalService:
    def __init__(self, host, port):
        self.host = host
        self.port = port

    def start(self):
        pass

    def stop(self):
        pass

    def dump_logs(self):
        pass

    def wait_for(self, pattern, timeout=30):
        return True


class SpawnedService:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("this run targets an existing broker: set KAFKA_URI")
