from django.urls import path

from . import views

urlpatterns = [
    path("", views.review_home_view, name="review-home"),
    path("runs/", views.run_list_view, name="review-runs"),
    path("runs/<int:run_id>/", views.run_detail_view, name="review-run-detail"),
    path("runs/<int:run_id>/promote/", views.run_promote_view, name="review-run-promote"),
    path("trust/", views.trust_view, name="review-trust"),
    path("compare/", views.compare_view, name="review-compare"),
    path("predictions/", views.prediction_list_view, name="review-predictions"),
    path("curves/", views.curves_view, name="review-curves"),
]
