from django import template

from backoffice.events import label_for

register = template.Library()


@register.filter
def event_label(name: str) -> str:
    return label_for(name)
