import secrets

from rest_framework import permissions, serializers, viewsets
from rest_framework.pagination import PageNumberPagination

from bench.baseline.models import BareJob


class BareJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = BareJob
        fields = "__all__"
        read_only_fields = ["job_id", "created_at", "updated_at"]

    def create(self, validated_data):
        validated_data["job_id"] = "bare_" + secrets.token_hex(7)
        return super().create(validated_data)


class BarePagination(PageNumberPagination):
    page_size = 20


class BareJobViewSet(viewsets.ModelViewSet):
    """Deliberately plain: no auth, no tenancy, no filters — the floor our job API is compared with."""

    queryset = BareJob.objects.all()
    serializer_class = BareJobSerializer
    pagination_class = BarePagination
    authentication_classes = []
    permission_classes = [permissions.AllowAny]
    filter_backends = []
