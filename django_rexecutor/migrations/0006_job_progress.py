# Progress reports (Job.report_progress): plain nullable columns, the same on every database.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_rexecutor', '0005_uniq'),
    ]

    operations = [
        migrations.AddField(
            model_name='jobrecord',
            name='progress',
            field=models.FloatField(blank=True, null=True, verbose_name='progress'),
        ),
        migrations.AddField(
            model_name='jobrecord',
            name='progress_note',
            field=models.TextField(blank=True, db_default='', default='', verbose_name='progress note'),
        ),
        migrations.AddField(
            model_name='jobrecord',
            name='progress_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='progress reported at'),
        ),
    ]
