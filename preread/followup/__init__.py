"""Follow-up reading (issue 14): the patient's priors, nodule matching and growth, Lung-RADS.

The typed objects that cross package boundaries (:class:`~preread.domain.Comparison`,
:class:`~preread.domain.NoduleComparison`, :class:`~preread.domain.PriorStudy`,
:class:`~preread.domain.LungRadsAssessment`) live in :mod:`preread.domain`; this package holds
the pure functions that make them.
"""
