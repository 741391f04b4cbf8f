from common.broker_async import reset_while_opening


def test_only_pikas_unconnected_socket_error_counts_as_a_reset() -> None:
    # The text pika 1.3 raised out of a worker's I/O loop in the fault suite, when the fault
    # proxy reset a connection as it opened (tests/faults/test_retries.py).
    assert reset_while_opening(ValueError(
        "Expected connected socket, but getpeername() failed: error=OSError(107, "
        "'Transport endpoint is not connected'); <socket.socket fd=11>; "))
    assert not reset_while_opening(ValueError("invalid literal for int() with base 10"))
