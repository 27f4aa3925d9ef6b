"""Input of the organisation pages: parse and bound-check only; the services decide."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from booking.choices import Role
from testbed.choices import KeyScope


class AccessibleForm(forms.Form):
    """Marks a field with an error `aria-invalid` and points it at its message
    (`<id>-error`, as portal/templates/portal/_organization_field.html writes it)."""

    def add_error(self, field, error):
        super().add_error(field, error)
        if isinstance(field, str) and field in self.fields:
            attrs = self.fields[field].widget.attrs
            attrs["aria-invalid"] = "true"
            attrs["aria-describedby"] = f"{self[field].auto_id}-error"


SCOPE_HELP = {
    KeyScope.CATALOG_READ: _("장비 목록과 예약 가능 시간 읽기"),
    KeyScope.BOOKINGS_READ: _("기관의 예약 읽기"),
    KeyScope.BOOKINGS_WRITE: _("예약하기, 이 키로 한 예약 바꾸기"),
    KeyScope.USAGE_READ: _("쿼터와 사용량 보고서 읽기"),
    KeyScope.MEMBERS_MANAGE: _("구성원 목록 보기와 초대"),
    KeyScope.WEBHOOKS_MANAGE: _("웹훅 엔드포인트 관리와 전송 기록 보기"),
}


class MemberInviteForm(AccessibleForm):
    """Add a person: a new username creates the account, an existing one is invited."""

    username = forms.CharField(label=_("아이디"), max_length=150)
    email = forms.EmailField(label=_("이메일"), max_length=254)
    role = forms.ChoiceField(label=_("역할"), choices=Role.choices, initial=Role.MEMBER)
    password = forms.CharField(
        label=_("처음 비밀번호 (새 계정만, 선택)"),
        required=False,
        max_length=128,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )


class MemberRoleForm(AccessibleForm):
    role = forms.ChoiceField(label=_("역할"), choices=Role.choices)


class ApiKeyCreateForm(AccessibleForm):
    name = forms.CharField(label=_("키 이름 (사용할 시스템)"), max_length=100)
    scopes = forms.MultipleChoiceField(
        label=_("권한 범위"),
        choices=[(scope, SCOPE_HELP[KeyScope(scope)]) for scope in KeyScope.values],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": _("권한 범위를 하나 이상 고르세요.")},
    )


class InvitationAnswerForm(forms.Form):
    answer = forms.ChoiceField(choices=[("accept", "accept"), ("decline", "decline")])
