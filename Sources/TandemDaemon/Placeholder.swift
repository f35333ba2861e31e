// placeholder until this session's code lands
