# The catalogue now keeps the active model's top-1 category on each product (labelapp 0006) and computes the
# effective category from it; fill it from the active version's predictions, as promotion does from now on.

from django.db import migrations


def copy_active_predictions(apps, schema_editor):
    schema_editor.execute(
        "UPDATE labelapp_product AS p SET model_category_id = pr.category_id, model_confidence = pr.confidence "
        "FROM classifier_prediction AS pr JOIN classifier_modelversion AS v ON v.id = pr.model_version_id "
        "WHERE v.is_active AND pr.product_id = p.id AND pr.category_id IS NOT NULL")


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0001_initial'),
        ('labelapp', '0006_product_category_sources'),
    ]

    operations = [
        migrations.RunPython(copy_active_predictions, migrations.RunPython.noop),
    ]
