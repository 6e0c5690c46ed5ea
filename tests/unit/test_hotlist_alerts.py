import pytest

from services.hotlist.domain.alerts import (
    Disposition,
    OutOfOrder,
    Status,
    WorkflowState,
    alert_id,
    allowed_dispositions,
    check_disposition,
    check_reconfirmation,
    check_verification,
)

pytestmark = pytest.mark.unit


def test_alert_id_is_idempotent_per_read_entry_and_version() -> None:
    assert alert_id("r1", "e1", 4) == alert_id("r1", "e1", 4)
    assert len({alert_id("r1", "e1", 4), alert_id("r2", "e1", 4), alert_id("r1", "e2", 4),
                alert_id("r1", "e1", 5)}) == 4
    # Fields cannot run into each other.
    assert alert_id("r1", "1e", 4) != alert_id("r11", "e", 4)


def test_steps_in_order() -> None:
    check_verification(WorkflowState(Status.NEW))
    check_reconfirmation(WorkflowState(Status.VERIFIED, verified_match=True))
    check_disposition(WorkflowState(Status.RECONFIRMED, True, True), Disposition.STOP_MADE)


@pytest.mark.parametrize(
    ("check", "state"),
    [
        (check_verification, WorkflowState(Status.VERIFIED, True)),
        (check_reconfirmation, WorkflowState(Status.NEW)),
        (check_reconfirmation, WorkflowState(Status.VERIFIED, verified_match=False)),
        (check_reconfirmation, WorkflowState(Status.DISPOSED, True, True)),
        (lambda s: check_disposition(s, Disposition.CONFIRMED), WorkflowState(Status.NEW)),
        (lambda s: check_disposition(s, Disposition.CONFIRMED), WorkflowState(Status.VERIFIED, True)),
        (lambda s: check_disposition(s, Disposition.CONFIRMED), WorkflowState(Status.VERIFIED, False)),
        (lambda s: check_disposition(s, Disposition.STOP_MADE), WorkflowState(Status.RECONFIRMED, True, False)),
        (lambda s: check_disposition(s, Disposition.MISREAD), WorkflowState(Status.DISPOSED, True, True)),
    ],
)
def test_out_of_order_steps_are_refused(check, state) -> None:
    with pytest.raises(OutOfOrder):
        check(state)


def test_allowed_dispositions() -> None:
    assert allowed_dispositions(WorkflowState(Status.VERIFIED, False)) == {Disposition.MISREAD}
    assert allowed_dispositions(WorkflowState(Status.RECONFIRMED, True, False)) == {Disposition.NO_LONGER_ACTIVE}
    assert Disposition.NO_LONGER_ACTIVE not in allowed_dispositions(WorkflowState(Status.RECONFIRMED, True, True))
