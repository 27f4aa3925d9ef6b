from rest_framework.routers import SimpleRouter

from equipment.api import views

router = SimpleRouter()
router.trailing_slash = "/?"  # API.md paths have no trailing slash; accept both
router.register("centers", views.CenterViewSet, basename="center")
router.register("equipment-types", views.EquipmentTypeViewSet, basename="equipment-type")
router.register("pools", views.PoolViewSet, basename="pool")

urlpatterns = router.urls
