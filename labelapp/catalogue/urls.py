from django.urls import path

from labelapp.catalogue import feed_category_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("products/", views.product_list_view, name="product-list"),
    path("categories/", views.category_tree_view, name="category-tree"),
    path("taxonomy/propose/", views.taxonomy_propose_view, name="taxonomy-propose"),
    path("taxonomy/propose/upload/", views.taxonomy_propose_upload_view, name="taxonomy-propose-upload"),
    path("taxonomy/propose/taxonomy.csv", views.taxonomy_proposal_csv_view, name="taxonomy-proposal-csv"),
    path("taxonomy/propose/apply/", views.taxonomy_proposal_apply_view, name="taxonomy-proposal-apply"),
    path("imports/", views.import_list_view, name="import-list"),
    path("imports/<int:run_id>/", views.import_detail_view, name="import-detail"),
    path("imports/sources/", feed_category_views.feed_source_list_view, name="feed-sources"),
    path("imports/sources/<str:source>/categories/", feed_category_views.feed_category_map_view,
         name="feed-category-map"),
    path("imports/sources/<str:source>/categories/mode/", feed_category_views.feed_category_mode_view,
         name="feed-category-mode"),
    path("imports/sources/<str:source>/categories/entry/", feed_category_views.feed_category_entry_view,
         name="feed-category-entry"),
    path("imports/category-options/", feed_category_views.feed_category_options_view, name="feed-category-options"),
]
