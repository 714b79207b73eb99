"""Demo data: logins, groups, and the spec's scenarios as workflows.

Every function here is idempotent: it looks things up by natural key before creating them.
Other apps add their part through ``SEEDERS``.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105  (a published demo login for local runs)

USERS = [
    # username, email, first name, staff, groups
    ("alice", "alice@example.com", "Alice", False, ["Intake", "Sales"]),
    ("bob", "bob@example.com", "Bob", False, ["Intake", "Assessment"]),
    ("carol", "carol@example.com", "Carol", False, ["Assessment"]),
    ("dave", "dave@example.com", "Dave", False, ["Review"]),
    ("maria", "maria@example.com", "Maria", False, ["Intake", "Assessment", "Review"]),
]
GROUPS = ["Intake", "Assessment", "Review", "Sales", "Managers"]


def seed_users() -> list[str]:
    user_model = get_user_model()
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in GROUPS}
    demo, created = user_model.objects.get_or_create(
        username=DEMO_USERNAME,
        defaults={
            "email": "demo@example.com",
            "is_staff": True,
            "is_superuser": True,
            "first_name": "Demo",
        },
    )
    if created or not demo.check_password(DEMO_PASSWORD):
        demo.set_password(DEMO_PASSWORD)
        demo.is_staff = demo.is_superuser = True
        demo.save()
    demo.groups.add(groups["Managers"])
    for username, email, first_name, is_staff, group_names in USERS:
        user, made = user_model.objects.get_or_create(
            username=username,
            defaults={"email": email, "first_name": first_name, "is_staff": is_staff},
        )
        if made:
            user.set_password(DEMO_PASSWORD)
            user.save()
        user.groups.add(*[groups[name] for name in group_names])
    view_perms = Permission.objects.filter(codename__startswith="view_")
    groups["Managers"].permissions.add(*view_perms)
    return [
        f"users: {DEMO_USERNAME} + {', '.join(u[0] for u in USERS)}",
        f"groups: {', '.join(GROUPS)}",
    ]


def seed_workflows() -> list[str]:
    from crm.demo import WORKFLOWS
    from workflows.services import workflow_save

    user = get_user_model().objects.get(username=DEMO_USERNAME)
    slugs: list[str] = []
    for document in WORKFLOWS:
        workflow_save(document=document, user=user)
        slugs.append(str(document["slug"]))
    return [f"workflows: {', '.join(slugs)}"]


def seeders() -> list[Callable[[], list[str]]]:
    from crm.demo import seed_records
    from tasks_inbox.demo import seed as seed_tasks

    return [seed_users, seed_workflows, seed_records, seed_tasks]


def seed() -> list[str]:
    lines: list[str] = []
    for seeder in seeders():
        lines.extend(seeder())
    return lines
