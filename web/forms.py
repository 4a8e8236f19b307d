import json

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from ai_core.models import JobPriority
from business.api.parsers import JSONRefused, json_parse
from business.errors import ApplicationError
from business.proxies import client_ip
from business.services import login_check


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
