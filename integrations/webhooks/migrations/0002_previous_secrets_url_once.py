"""Webhook endpoints: several rotated-out secrets, one URL per organisation, Korean labels."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def carry_previous_secret(apps, schema_editor):
    """The one rotated-out secret kept so far becomes the first of the list (if still valid)."""
    from django.utils import timezone

    Endpoint = apps.get_model("webhooks", "WebhookEndpoint")
    now = timezone.now()
    for endpoint in Endpoint.objects.exclude(previous_secret="").filter(
        previous_secret_expires_at__gt=now
    ):
        endpoint.previous_secrets = [
            {
                "secret": endpoint.previous_secret,
                "until": endpoint.previous_secret_expires_at.isoformat(),
            }
        ]
        endpoint.save(update_fields=["previous_secrets"])


class Migration(migrations.Migration):
    dependencies = [
        ("booking", "0008_booking_replaces"),
        ("webhooks", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookendpoint",
            name="previous_secrets",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(carry_previous_secret, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="webhookendpoint",
            name="previous_secret",
        ),
        migrations.RemoveField(
            model_name="webhookendpoint",
            name="previous_secret_expires_at",
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="at",
            field=models.DateTimeField(verbose_name="시각"),
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="delivery",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="attempt_log",
                to="webhooks.webhookdelivery",
                verbose_name="웹훅 전송",
            ),
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="duration_ms",
            field=models.PositiveIntegerField(default=0, verbose_name="걸린 시간 (ms)"),
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="error",
            field=models.CharField(blank=True, max_length=500, verbose_name="오류"),
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="manual",
            field=models.BooleanField(default=False, verbose_name="다시 보내기"),
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="number",
            field=models.PositiveIntegerField(verbose_name="번호"),
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="response_body",
            field=models.CharField(blank=True, max_length=2048, verbose_name="응답 본문"),
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="response_status",
            field=models.PositiveIntegerField(blank=True, null=True, verbose_name="응답 상태"),
        ),
        migrations.AlterField(
            model_name="webhookattempt",
            name="succeeded",
            field=models.BooleanField(default=False, verbose_name="성공"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="attempts",
            field=models.PositiveIntegerField(default=0, verbose_name="시도 횟수"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="body",
            field=models.TextField(verbose_name="본문"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="claimed_until",
            field=models.DateTimeField(blank=True, null=True, verbose_name="보내기 점유 끝"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, db_index=True, verbose_name="만든 때"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="endpoint",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="webhooks.webhookendpoint",
                verbose_name="웹훅 엔드포인트",
            ),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="event_id",
            field=models.CharField(max_length=64, verbose_name="이벤트 ID"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="event_type",
            field=models.CharField(max_length=64, verbose_name="이벤트 종류"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="first_attempt_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="첫 시도"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="last_attempt_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="마지막 시도"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="last_error",
            field=models.CharField(blank=True, max_length=500, verbose_name="마지막 오류"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="next_attempt_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="다음 시도"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "대기"),
                    ("sending", "보내는 중"),
                    ("succeeded", "성공"),
                    ("failed", "실패"),
                ],
                default="pending",
                max_length=16,
                verbose_name="상태",
            ),
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="만든 때"),
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="만든 사람",
            ),
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="disabled_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="꺼진 때"),
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="last_success_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="마지막 성공"),
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="organization",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="webhook_endpoints",
                to="booking.organization",
                verbose_name="기관",
            ),
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, verbose_name="바꾼 때"),
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="url",
            field=models.URLField(max_length=2000, verbose_name="받을 주소"),
        ),
        migrations.AddConstraint(
            model_name="webhookendpoint",
            constraint=models.UniqueConstraint(
                fields=("organization", "url"), name="webhooks_endpoint_url_once_per_org"
            ),
        ),
    ]
