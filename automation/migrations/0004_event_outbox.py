from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("automation", "0003_actionrun_ordering"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="event",
            name="event_undispatched",
        ),
        migrations.AddField(
            model_name="event",
            name="dispatch_after",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="event",
            name="dispatch_error",
            field=models.TextField(blank=True),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                condition=models.Q(("dispatched_at__isnull", True)),
                fields=["occurred_at", "id"],
                name="event_outbox",
            ),
        ),
    ]
