from django.shortcuts import render

from equipment.selectors import equipment_type_list, pool_list


def home(request):
    """The front page: what can be booked, and where to go next."""
    return render(
        request,
        "booking/home.html",
        {
            "types": equipment_type_list().order_by("center__code", "code"),
            "pools": pool_list().order_by("code"),
        },
    )
