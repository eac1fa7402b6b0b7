# Feed category mapping per source (issue #12), and the import report of matched / unmatched feed categories.

import django.db.models.deletion
import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('labelapp', '0007_source_trust'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='importrun',
            name='category_report',
            field=models.JSONField(blank=True, default=dict, help_text='Products: how many matched a taxonomy node, how many did not, the most frequent unmatched paths.'),
        ),
        migrations.CreateModel(
            name='FeedCategoryMap',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('source', models.CharField(max_length=100, unique=True)),
                ('mode', models.CharField(choices=[('exact', "exact: the feed path is a node's full path"), ('cut', "cut: the feed path's first N levels are a node's full path"), ('ancestor', 'ancestor: the deepest node whose path begins the feed path')], default='exact', max_length=10)),
                ('levels', models.PositiveSmallIntegerField(blank=True, help_text='Levels kept in the cut mode.', null=True)),
                ('version', models.PositiveIntegerField(default=0)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('updated_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['source'],
            },
        ),
        migrations.CreateModel(
            name='FeedCategoryMapEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('source', models.CharField(max_length=100)),
                ('feed_path', models.CharField(help_text="A normalised feed path, 'A > B > C'.", max_length=2000)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('category', models.ForeignKey(blank=True, help_text='Empty: the path maps to no node, whatever the mode says.', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='labelapp.category')),
                ('updated_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['source', 'feed_path'],
                'constraints': [models.UniqueConstraint(models.F('source'), django.db.models.functions.text.Lower('feed_path'), name='feedcategorymapentry_path_uniq')],
            },
        ),
    ]
