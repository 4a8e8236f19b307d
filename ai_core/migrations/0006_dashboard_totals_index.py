from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("ai_core", "0005_search_trigram_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="jobdailystat",
            index=models.Index(fields=["brand", "job_type", "status"], include=("jobs", "cost_micros"),
                               name="jobdailystat_totals"),
        ),
    ]
