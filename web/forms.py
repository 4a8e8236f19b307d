import json
from datetime import date, timedelta

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone

from ai_core.models import JobPriority
from business.errors import ApplicationError
from business.models import ApiKeyScope
from business.proxies import client_ip
from business.services import login_check
from kernel.jsonread import JSONRefused, json_parse


class SubmitJobForm(forms.Form):
    job_type = forms.ChoiceField()
    priority = forms.ChoiceField(choices=JobPriority.choices, initial=JobPriority.NORMAL)
    description = forms.CharField(max_length=2000, required=False)
    input_data = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        initial=json.dumps({"messages": [{"role": "user", "content": "Hello!"}]}, indent=2),
    )

    def __init__(self, *args, job_types: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["job_type"].choices = [(name, name) for name in job_types]

    def clean_input_data(self):
        try:
            value = json_parse(self.cleaned_data["input_data"], max_depth=settings.AICORE_MAX_JSON_DEPTH)
        except JSONRefused as exc:
            raise forms.ValidationError(exc.detail, code=exc.error_code.lower()) from None
        if not isinstance(value, dict):
            raise forms.ValidationError("input_data must be a JSON object")
        return value


class ThrottledLoginForm(AuthenticationForm):
    """The web login counts failures with the API's login (per username and per IP) and refuses alike."""

    def clean(self):
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = login_check(
                    username=username,
                    password=password,
                    ip=client_ip(self.request.META) if self.request else None,
                )
            except ApplicationError as exc:
                raise forms.ValidationError(exc.detail, code=exc.error_code.lower()) from None
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class CredentialForm(forms.Form):
    """A provider key: written, never read back (the field is always rendered empty)."""

    api_key = forms.CharField(
        label="API key", max_length=500, widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})
    )
    base_url = forms.URLField(label="Base URL (optional)", required=False, max_length=500, assume_scheme="https")
    organization = forms.CharField(label="Organization (optional)", required=False, max_length=200)


PERIODS = [("7", "last 7 days"), ("30", "last 30 days"), ("90", "last 90 days"), ("month", "this month")]
MAX_PERIOD_DAYS = 366


class UsagePeriodForm(forms.Form):
    """The usage explorer's period (a preset or two dates) and scope (this brand, or the company's brands)."""

    period = forms.ChoiceField(choices=[*PERIODS, ("custom", "from … to …")], required=False, initial="30")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")
    scope = forms.ChoiceField(
        choices=[("brand", "this brand"), ("company", "all brands of the company")], required=False
    )

    def __init__(self, *args, company_admin: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not company_admin:
            del self.fields["scope"]

    def chosen(self) -> tuple[date, date, str]:
        """(first day, last day, scope): what was asked when it is valid, else the last 30 days of this brand."""
        today = timezone.localdate()
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        scope = data.get("scope") or "brand"
        choice = data.get("period") or "30"
        if choice == "month":
            return today.replace(day=1), today, scope
        if data.get("since") and data.get("until"):  # two dates win over a preset
            first, last = sorted([data["since"], data["until"]])
            return max(first, last - timedelta(days=MAX_PERIOD_DAYS - 1)), last, scope
        days = int(choice) if choice.isdigit() else 30
        return today - timedelta(days=days - 1), today, scope


class ApiKeyForm(forms.Form):
    """A new brand API key: what POST /ai/api-keys/ takes (ApiKeyInputSerializer), as a form."""

    name = forms.CharField(max_length=200)
    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices, widget=forms.CheckboxSelectMultiple, initial=ApiKeyScope.values
    )
    expires_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    monthly_cost_limit = forms.DecimalField(
        label="Monthly cost limit, USD (optional)", max_digits=14, decimal_places=6, min_value=0, required=False
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A datetime-local value has no zone: it is read in the server's (TIME_ZONE), so the label names it.
        self.fields["expires_at"].label = f"Expires at ({timezone.get_current_timezone_name()}, optional)"

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("Choose a moment in the future: this key would be expired already.")
        return expires_at
