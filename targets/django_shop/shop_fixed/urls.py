from django.urls import path

from shop_fixed import views

urlpatterns = [path("", views.product)]
