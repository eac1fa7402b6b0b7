from django.urls import path

from . import views

urlpatterns = [
    path("", views.evaluation_home_view, name="similarity-home"),
    path("random/", views.evaluation_random_view, name="similarity-random"),
    path("products/<int:product_id>/", views.evaluation_product_view, name="similarity-evaluate"),
    path("judgements/", views.judgement_create_view, name="similarity-judge"),
    path("precision/", views.precision_view, name="similarity-precision"),
    path("precision/auto/", views.precision_auto_view, name="similarity-precision-auto"),
    path("jobs/", views.job_list_view, name="similarity-jobs"),
    path("jobs/start/", views.job_start_view, name="similarity-job-start"),
    path("jobs/<int:job_id>/progress/", views.job_progress_view, name="similarity-job-progress"),
]
