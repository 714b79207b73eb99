"""The guided portfolio process (the demo workflow), end to end, on both branches.

profile form -> method choice -> the framework step (framework only) or product selection
(manual or hybrid) -> a validate step that fails with "weights must sum to 100%" unless
they do -> a review task.
"""

from __future__ import annotations

from typing import Any

import pytest

from automation import services
from automation.events import emit
from automation.models import ActionRun, Run
from tasks_inbox import services as tasks
from tasks_inbox.demo import PORTFOLIO
from tasks_inbox.models import Task
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def advisor(make_user: Any) -> Any:
    make_user("reviewer", groups=("Review",))
    user = make_user("adele", groups=("Sales",))
    workflow_save(document=PORTFOLIO)
    return user


def work(drain: Any, user: Any, task_type: str, data: dict[str, Any]) -> Task:
    """The advisor starts and completes the open task of this type; the run moves on."""
    task = Task.objects.get(task_type=task_type, is_open=True)
    assert task.assignee == user
    tasks.task_transition(task_id=task.pk, action="start", actor=user)
    tasks.task_complete(task_id=task.pk, actor=user, data=data)
    services.run_advance(run_id=task.origin_run_id)
    drain()
    return task


def steps(run: Run) -> dict[str, str]:
    return dict(ActionRun.objects.filter(run=run).values_list("step_key", "status"))


def start(drain: Any, client: str) -> Run:
    emit("portfolio.requested", {"client": client, "advisor": "adele@example.com"})
    drain()
    return Run.objects.get(workflow__slug="guided-portfolio", event__payload__client=client)


def test_framework_branch(drain: Any, advisor: Any) -> None:
    run = start(drain, "Ada")
    profile = Task.objects.get(task_type="portfolio_profile")
    assert profile.title == "Investor profile: Ada" and profile.due_at is not None
    work(drain, advisor, "portfolio_profile", {"risk": "medium", "horizon_years": "15"})
    method = Task.objects.get(task_type="portfolio_method")
    assert method.description == "Risk appetite medium, horizon 15 years."
    work(drain, advisor, "portfolio_method", {"method": "framework"})
    framework = Task.objects.get(task_type="portfolio_framework")
    assert framework.title == "Apply the house framework for Ada"
    work(drain, advisor, "portfolio_framework", {"model": "balanced", "checked": True})

    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert steps(run) == {
        "profile": "completed",
        "method": "completed",
        "framework": "completed",
        "products": "skipped",
        "check_weights": "skipped",
        "review": "completed",
    }
    assert not Task.objects.filter(task_type="portfolio_products").exists()
    review = Task.objects.get(task_type="portfolio_review")
    assert review.title == "Review the portfolio of Ada (framework)"
    assert review.assignee.username == "reviewer" and review.priority_name == "high"


@pytest.mark.parametrize("method", ["manual", "hybrid"])
def test_product_selection_branch_with_weights_summing_to_100(
    drain: Any, advisor: Any, method: str
) -> None:
    run = start(drain, f"Grace {method}")
    work(drain, advisor, "portfolio_profile", {"risk": "high", "horizon_years": 30})
    work(drain, advisor, "portfolio_method", {"method": method})
    assert not Task.objects.filter(task_type="portfolio_framework").exists()
    products = Task.objects.get(task_type="portfolio_products")
    assert products.title == f"Select products and weights for Grace {method}"
    work(
        drain,
        advisor,
        "portfolio_products",
        {"equity": "55.5", "bonds": "30", "cash": "4.5", "alternatives": "10"},
    )

    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert steps(run) == {
        "profile": "completed",
        "method": "completed",
        "framework": "skipped",
        "products": "completed",
        "check_weights": "completed",
        "review": "completed",
    }
    check = ActionRun.objects.get(run=run, step_key="check_weights")
    assert check.output["values"] == {"total": 100}
    assert Task.objects.get(task_type="portfolio_review").title == (
        f"Review the portfolio of Grace {method} ({method})"
    )


def test_weights_not_summing_to_100_fail_the_run_with_the_message(drain: Any, advisor: Any) -> None:
    run = start(drain, "Linus")
    work(drain, advisor, "portfolio_profile", {"risk": "low", "horizon_years": 5})
    work(drain, advisor, "portfolio_method", {"method": "manual"})
    work(
        drain,
        advisor,
        "portfolio_products",
        {"equity": 60, "bonds": 30, "cash": 5, "alternatives": 0},
    )

    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error_code == "VALIDATION_FAILED"
    assert run.error == "Step 'check_weights' failed: weights must sum to 100%"
    check = ActionRun.objects.get(run=run, step_key="check_weights")
    assert check.error == "weights must sum to 100%"
    assert check.output["trace"]["actual"] == 95
    assert steps(run)["review"] == "cancelled"
    assert not Task.objects.filter(task_type="portfolio_review").exists()


def test_the_product_form_refuses_weights_out_of_range(drain: Any, advisor: Any) -> None:
    start(drain, "Edsger")
    work(drain, advisor, "portfolio_profile", {"risk": "low", "horizon_years": 5})
    work(drain, advisor, "portfolio_method", {"method": "hybrid"})
    products = Task.objects.get(task_type="portfolio_products")
    tasks.task_transition(task_id=products.pk, action="start", actor=advisor)
    from tasks_inbox.errors import FormInvalid

    with pytest.raises(FormInvalid) as info:
        tasks.task_complete(
            task_id=products.pk, actor=advisor, data={"equity": 120, "bonds": "lots", "cash": 0}
        )
    assert info.value.fields == {
        "data.equity": ["must be at most 100"],
        "data.bonds": ["must be a number"],
        "data.alternatives": ["this field is required"],
    }
