"""factory_boy factories for batches: a batch of a brand and the links of its jobs.

The links are rows of their own (ai_core's job knows nothing of batches): `BatchJobFactory(job=job, batch=batch)`
puts an existing job into a batch; without `job` it creates one through AIJobFactory (the services)."""

import factory
from factory.django import DjangoModelFactory

from ai_core.tests.factories import AIJobFactory, AIJobTypeFactory
from batches.models import Batch, BatchJob
from business.tests.factories import BrandFactory


class BatchFactory(DjangoModelFactory):
    class Meta:
        model = Batch

    brand = factory.SubFactory(BrandFactory)
    job_type = factory.SubFactory(AIJobTypeFactory)
    description = factory.Sequence(lambda n: f"batch number {n}")


class BatchJobFactory(DjangoModelFactory):
    class Meta:
        model = BatchJob

    batch = factory.SubFactory(BatchFactory)
    job = factory.LazyAttribute(lambda link: AIJobFactory(brand=link.batch.brand, job_type=link.batch.job_type))
    line = factory.Sequence(lambda n: n)
