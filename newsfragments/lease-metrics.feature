New metrics: `denoisecast_node_lease_held`, `denoisecast_node_lease_renewals_total`, `denoisecast_node_lease_renewals_failed_total` and `denoisecast_bus_limit_writes_dropped_total`.
